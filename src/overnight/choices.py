"""The names the command line offers, in a leaf module: `overnight --help` loads nothing else.

Each has its one home here; the modules that use them (config, demo, the dashboard) import them.
"""

from __future__ import annotations

#: the agent kinds (the registry overnight.agents.AGENTS has one factory per name)
AGENT_KINDS = ("tune", "command", "openai", "anthropic", "claude", "codex", "gemini", "opencode", "aider")
#: the examples `overnight demo` can copy (folders of overnight.examples)
EXAMPLES = ("tinylm", "quickstart", "render", "nanogpt")
#: where `overnight dashboard` listens by default
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
