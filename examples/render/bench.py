"""The benchmark (protected): how long render.render takes for a fixed set of templates.

Three realistic templates with fixed data: a product listing page (a loop over 200
products with conditionals and a nested loop of tags), an order confirmation email
(filters, escaping, a loop of order lines) and a report of nested loops
(departments, teams, members). A repeat renders each of them once, with contexts
built afresh (outside the timed part) so that nothing can be reused from one repeat
to the next but the templates themselves.

Every output is checked against the SHA-256 of the expected output written below
(produced once from the shipped render.py), so a renderer that is fast but renders
anything differently fails: exit 1, no metric. After a warm-up the repeats run for
about half of OVERNIGHT_BUDGET_S (default 10 s), and the summary gives the median:

    ---
    render_us: <median microseconds to render the whole set once>
    listing_us / email_us / nested_us: <the median of each template>
    cpu_us: <the median CPU time of this process per set (process_time), for comparison>
    renders: <timed repeats of the whole set>
    total_seconds: <wall time of this script>

To change a template or the data, regenerate the digests with the shipped renderer:
    python -c "import bench; bench.print_digests()"
"""

import hashlib
import os
import statistics
import sys
from time import perf_counter, process_time  # bound before the renderer is imported

import render

# --- the data: fixed, built by plain arithmetic ----------------------------------

ADJECTIVES = ["classic", "ultra", "compact", "deluxe", "smart", "rugged", "silent", "vintage", "eco", "pro"]
NOUNS = ["kettle", "backpack", "lamp", "headphones", "blender", "tent", "keyboard", "mug", "jacket", "drone"]
BRANDS = ["acme", "Globex", "initech", "Umbrella & Co", "stark", "Wayne", "Tyrell", "<Cyberdyne>"]
TAGS = ["New", "BESTSELLER", "eco-friendly", "Gift Idea", "limited", "Free Shipping"]


class Product:
    """A product with attributes (the template reads them with dotted names)."""

    def __init__(self, i):
        self.id = 1000 + i
        self.name = f"{ADJECTIVES[i % 10].title()} {NOUNS[(i * 7) % 10]} {i}"
        if i % 9 == 0:
            self.name += ' "limited" <edition>'
        if i % 13 == 0:
            self.name += " & friends' set"
        self.slug = f"{ADJECTIVES[i % 10]}-{NOUNS[(i * 7) % 10]}-{i}"
        self.brand = BRANDS[(i * 3) % len(BRANDS)]
        cents = 499 + (i * 2389) % 40000
        self.price = f"${cents // 100}.{cents % 100:02d}"
        self.on_sale = i % 4 == 1
        sale = cents * 3 // 4
        self.sale_price = f"${sale // 100}.{sale % 100:02d}"
        self.stock = (i * 17) % 23 if i % 5 else 0
        self.rating = 1 + (i * 11) % 5
        self.reviews = (i * 37) % 120
        self.description = (
            "" if i % 6 == 0 else f"The {NOUNS[(i * 7) % 10]} you need: {ADJECTIVES[(i + 3) % 10]}, tested & loved."
        )
        self.tags = [TAGS[(i + k) % len(TAGS)] for k in range(i % 4)]


def listing_context():
    return {
        "site": {"name": "Gadget Barn", "footer": "<p>&copy; Gadget Barn &mdash; <a href='/about'>about</a></p>"},
        "page": {"title": "home & garden deals", "category": "Home & Garden"},
        "user": {"logged_in": True, "name": "jane o'neil", "cart": ["p1", "p2", "p3"]},
        "products": [Product(i) for i in range(200)],
    }


def email_context():
    lines = []
    for i in range(40):
        cents = 250 + (i * 1237) % 9000
        qty = 1 + i % 3
        total = cents * qty
        lines.append(
            {
                "name": f"{ADJECTIVES[(i * 3) % 10]} {NOUNS[i % 10]}",
                "qty": qty,
                "total": f"${total // 100}.{total % 100:02d}",
                "gift": i % 5 == 2,
                "note": "" if i % 10 == 2 else f'For "Sam" & <family> #{i}',
            }
        )
    return {
        "customer": {
            "first_name": "MARY-ANNE",
            "last_name": "o'brien",
            "email": "Mary.OBrien@Example.COM",
            "vip": False,
        },
        "order": {
            "subject": "your order has shipped",
            "number": 58213,
            "date": "2024-03-05",
            "total": 742,
            "shipping": None,
            "lines": lines,
            "coupon": "",
        },
        "support": {"phone": "+1 555 0100", "hours": None},
        "signature": "<p>The Gadget Barn team<br><img src='/logo.png' alt='logo'></p>",
    }


def nested_context():
    departments = []
    for d in range(12):
        teams = []
        for t in range(4):
            members = [
                {"name": f"{ADJECTIVES[(d + t + m) % 10].title()} {NOUNS[(d * t + m) % 10].title()}", "lead": m == 0}
                for m in range(2 + (d + t) % 5)
            ]
            teams.append(
                {
                    "name": f"team {NOUNS[(d + t) % 10]}",
                    "members": members,
                    "budget": 20000 + (d * 7919 + t * 3571) % 130000,
                }
            )
        departments.append({"name": f"dept {ADJECTIVES[d % 10]} {d}", "remote": d % 3 == 0, "teams": teams})
    return {"title": "Org chart <2024>", "departments": departments}


# --- the templates -----------------------------------------------------------------

LISTING = """<!DOCTYPE html>
<html>
<head><title>{{ page.title|title }} | {{ site.name }}</title></head>
<body>
{# the header: greeting and cart #}
<header>
  <h1>{{ site.name|upper }}</h1>
  {% if user.logged_in %}
  <p class="greeting">Welcome back, {{ user.name|title }}!{% if user.cart|length > 0 %} You have {{ user.cart|length }} item{% if user.cart|length != 1 %}s{% endif %} in your cart.{% endif %}</p>
  {% else %}
  <p class="greeting"><a href="/login">Sign in</a></p>
  {% endif %}
</header>
<main>
  <h2>{{ page.category }} ({{ products|length }} products)</h2>
  <ul class="products">
  {% for product in products %}
    <li class="product{% if loop.first %} first{% endif %}{% if loop.last %} last{% endif %}" id="p{{ product.id }}">
      <span class="rank">{{ loop.index }}.</span>
      <a href="/p/{{ product.slug }}">{{ product.name }}</a>
      <span class="brand">{{ product.brand|upper }}</span>
      <span class="price">{% if product.on_sale %}<del>{{ product.price }}</del> <b>{{ product.sale_price }}</b>{% else %}{{ product.price }}{% endif %}</span>
      {% if product.stock == 0 %}<span class="stock out">Out of stock</span>{% elif product.stock < 5 %}<span class="stock low">Only {{ product.stock }} left</span>{% else %}<span class="stock">In stock</span>{% endif %}
      {% if product.rating >= 4 and product.reviews > 10 %}<span class="badge">Top rated</span>{% endif %}
      <p>{{ product.description|default:"No description yet." }}</p>
      {% if product.tags %}<ul class="tags">{% for tag in product.tags %}<li>{{ tag|lower }}</li>{% endfor %}</ul>{% endif %}
    </li>
  {% endfor %}
  </ul>
</main>
<footer>{{ site.footer|safe }}</footer>
</body>
</html>
"""

EMAIL = """Subject: {{ order.subject|title }}
To: {{ customer.email|lower }}

Dear {{ customer.first_name|title }} {{ customer.last_name|upper }},

Thank you for your order #{{ order.number }} placed on {{ order.date }}.
{% if customer.vip or order.total > 500 %}As a valued customer you get free express shipping.{% else %}Shipping: {{ order.shipping|default:"standard" }}.{% endif %}
{% if order.coupon %}Coupon applied: {{ order.coupon|upper }}{% endif %}
Your items ({{ order.lines|length }}):
{% for line in order.lines %}  {{ loop.index }}. {{ line.name|title }} x{{ line.qty }}: {{ line.total }}{% if line.gift %} (gift wrapped{% if line.note %}: "{{ line.note|escape }}"{% endif %}){% endif %}{% if line.qty > 1 and not line.gift %} [multi]{% endif %}
{% endfor %}
Total: ${{ order.total }}
{% if support.hours %}Our support line ({{ support.phone }}) is open {{ support.hours }}.{% else %}Call us at {{ support.phone|default:"our main number" }} any time.{% endif %}
Regards,
{{ signature|safe }}
{{ signature }}
"""

NESTED = """<h1>{{ title }}</h1>
<table>
{% for dept in departments %}<tbody class="dept{% if dept.remote %} remote{% endif %}">
<tr><th colspan="4">{{ loop.index }}/{{ loop.length }} {{ dept.name|upper }}</th></tr>
{% for team in dept.teams %}<tr class="team{% if loop.last %} last{% endif %}"><td>{{ loop.index }}. {{ team.name|title }}</td><td>{% for member in team.members %}{{ member.name }}{% if member.lead %}*{% endif %}{% if not loop.last %}, {% endif %}{% endfor %}</td><td>{{ team.members|length }}</td><td>{% if team.budget > 100000 %}high{% elif team.budget > 50000 %}medium{% else %}low{% endif %}</td></tr>
{% endfor %}</tbody>
{% endfor %}</table>
"""

CASES = [
    ("listing", LISTING, listing_context),
    ("email", EMAIL, email_context),
    ("nested", NESTED, nested_context),
]

# SHA-256 of each expected output, from the shipped render.py (see print_digests).
EXPECTED = {
    "listing": "d438b696bcc3e695d6634490d0f1e25666e3c13f9a7d9793a900f67f29af5c4f",
    "email": "c81f099edbb336df302f69f320ad2f0c0d124573d461d74aaf261e413fe6e203",
    "nested": "8e7f23367c6912adbd7b845d394ab9e544354767d1e1bb1c1a1bb7953b4670d6",
}

MIN_REPEATS = 5


def digest(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def print_digests():
    for name, template, make_context in CASES:
        print(f'    "{name}": "{digest(render.render(template, make_context()))}",')


def check(name, output, when):
    if not isinstance(output, str) or digest(output) != EXPECTED[name]:
        print(f"bench: template {name!r} rendered differently from the expected output ({when})")
        print(f"bench: first 300 characters of the output: {str(output)[:300]!r}")
        sys.exit(1)


def main():
    started = perf_counter()
    budget_s = float(os.environ.get("OVERNIGHT_BUDGET_S", "10"))
    timed_s = budget_s / 2  # the other half is headroom: warm-up, checks, start-up

    # warm-up: every template a few times, every output checked
    for repeat in range(3):
        for name, template, make_context in CASES:
            check(name, render.render(template, make_context()), f"warm-up {repeat + 1}")

    totals = []  # wall seconds (perf_counter) of each repeat: the metric
    cpus = []  # CPU seconds of this process (process_time) of each repeat: less hurt by other load
    each = {name: [] for name, _, _ in CASES}
    timing_started = perf_counter()
    while len(totals) < MIN_REPEATS or perf_counter() - timing_started < timed_s:
        contexts = [make_context() for _, _, make_context in CASES]
        outputs = []
        total = cpu = 0.0
        for (name, template, _), context in zip(CASES, contexts, strict=True):
            t0, c0 = perf_counter(), process_time()
            output = render.render(template, context)
            c1, t1 = process_time(), perf_counter()
            outputs.append(output)
            each[name].append(t1 - t0)
            total += t1 - t0
            cpu += c1 - c0
        for (name, _, _), output in zip(CASES, outputs, strict=True):
            check(name, output, f"repeat {len(totals) + 1}")
        totals.append(total)
        cpus.append(cpu)

    print("---")
    print(f"render_us: {statistics.median(totals) * 1e6:.1f}")
    for name, times in each.items():
        print(f"{name}_us: {statistics.median(times) * 1e6:.1f}")
    print(f"cpu_us: {statistics.median(cpus) * 1e6:.1f}")
    print(f"renders: {len(totals)}")
    print(f"total_seconds: {perf_counter() - started:.2f}")


if __name__ == "__main__":
    main()
