"""`overnight finalize`: the kept changes as a clean branch, ready for a pull request.

The run branch already holds exactly the kept changes, as one linear chain on the run's
start commit; its commits are the harness's (`exp <id>: <hypothesis>`, authored by
overnight). finalize writes the same trees again as ``overnight/<tag>-final``: one commit
per kept change, in order, authored by you (your git identity, when you have one), each
message holding the hypothesis and the measured improvement; or, with ``squash``, one
commit for all of them. The run branch and the user's branches are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from overnight import git
from overnight.errors import GitError, RunStateError
from overnight.records import Experiment, Status
from overnight.views import RunView
from overnight.views.text import figure_runs

_OVERNIGHT = {
    "GIT_AUTHOR_NAME": "overnight",
    "GIT_AUTHOR_EMAIL": "overnight@localhost",
    "GIT_COMMITTER_NAME": "overnight",
    "GIT_COMMITTER_EMAIL": "overnight@localhost",
}


@dataclass(frozen=True)
class Finalized:
    branch: str
    commits: list[str]  # new commits, oldest first
    keeps: list[int]  # the experiments they hold


def _message(view: RunView, e: Experiment) -> str:
    """The commit message of a keep: its hypothesis, and its one estimate (the same ``overnight show`` gives)."""
    before, _ = view.reference(e)
    said = f"Kept by overnight run {view.tag}, experiment {e.id}"
    if before is not None and e.metric is not None:
        said += f": {view.metric} {before:.6g} -> {e.metric:.6g} ({figure_runs(e.runs)})"
    if e.improvement is not None:
        said += f", a gain of {e.improvement:.4g}"
        if e.ci_low is not None and e.ci_high is not None:
            said += f" [{e.ci_low:.4g}, {e.ci_high:.4g}]"
    return f"{e.hypothesis}\n\n{said}.\n"


def _commit_tree(view: RunView, commit: str, parent: str, message: str) -> str:
    """A commit of ``commit``'s tree on ``parent``, by the user when git knows who that is, else by overnight."""
    args = ("commit-tree", f"{commit}^{{tree}}", "-p", parent, "-F", "-")
    try:
        return git.git(*args, cwd=view.root, input=message).strip()
    except GitError:  # no user identity configured
        pass
    try:
        return git.git(*args, cwd=view.root, input=message, env=_OVERNIGHT).strip()
    except GitError as err:
        raise RunStateError(f"could not write the final commits: {err}") from None


def significant(view: RunView) -> list[int]:
    """The keeps ``--only-significant`` takes: those whose contribution at scale is positive beyond doubt in
    the latest `overnight verify --ablate`, and the entangled ones (they cannot be taken out alone).

    A group (keeps that change the same lines, taken out together and measured as one) counts
    as a whole: when its contribution is significant every keep of it is taken, else none is
    taken for it (a later keep of the group measured alone can still be taken on its own)."""
    from overnight.verify import findings as verification

    found = verification.latest(view)
    if found is None or not found.ablation:
        raise RunStateError(
            f"run {view.tag} has no ablation yet: run `overnight verify --ablate --tag {view.tag}` first, "
            "then finalize --only-significant keeps the changes that matter at scale"
        )
    if not found.complete:
        raise RunStateError(f"the latest verification of run {view.tag} was stopped before the end; run it again")
    if all(c.estimate is None or c.estimate.pairs < 2 for c in found.ablation):
        raise RunStateError(
            f"verification {found.verification.id} of run {view.tag} has fewer than two runs per arm: no interval "
            "tells a contribution from noise; verify again with --runs 2 or more"
        )
    entangled = {c.id for c in found.ablation if c.entangled}
    chosen = sorted(entangled | set(found.significant()))
    if not chosen:
        raise RunStateError(
            f"no keep of run {view.tag} contributes significantly at scale (verification {found.verification.id}); "
            "nothing to finalize"
        )
    return chosen


def _picked(view: RunView, e: Experiment, base: str, onto: str) -> str:
    """The tree of keep ``e`` (made on ``base``) replayed onto ``onto``; raises when it conflicts."""
    tree = git.replay(view.root, onto, base, e.commit)
    if tree is None:
        raise RunStateError(
            f"keep #{e.id} does not apply without the keeps left out before it (a conflict); "
            "finalize without --only-significant, or edit the branch by hand"
        )
    return tree


def finalize(view: RunView, *, squash: bool = False, force: bool = False, only: list[int] | None = None) -> Finalized:
    """Write ``overnight/<tag>-final``; refuse to overwrite it unless ``force``.

    ``only``: the ids of the keeps to take (``--only-significant``); each is replayed onto the
    ones taken before it, so the trees differ from the run branch's where keeps were left out.
    """
    root, start = view.root, view.meta["start_commit"]
    keeps = [e for e in view.experiments if e.status is Status.KEEP]
    if not keeps:
        raise RunStateError(f"run {view.tag} kept nothing yet: there is nothing to finalize")
    tip = git.resolve(root, f"refs/heads/{git.BRANCH_PREFIX}{view.tag}")
    if tip is None:
        raise RunStateError(f"branch {git.BRANCH_PREFIX}{view.tag} is gone; the run's keeps are in its ledger")
    chain = git.git("rev-list", "--reverse", "--first-parent", f"{start}..{tip}", cwd=root).split()
    by_commit = {e.commit: e for e in keeps}
    if [c for c in chain if c not in by_commit] or len(chain) != len(keeps):
        raise RunStateError(
            f"branch {git.BRANCH_PREFIX}{view.tag} does not match the ledger's keeps; see `overnight status`"
        )
    branch = f"{git.BRANCH_PREFIX}{view.tag}-final"
    old = git.resolve(root, f"refs/heads/{branch}")
    if old and not force:
        raise RunStateError(f"branch {branch} exists; pass --force to write it again")
    ordered = [by_commit[c] for c in chain]
    trees = {e.id: e.commit for e in ordered}  # what each commit of the final branch holds
    if only is not None:
        onto, base = start, start
        for e in ordered:
            if e.id in only:
                onto = trees[e.id] = _picked(view, e, base, onto) if onto != base else e.commit
            base = e.commit
        ordered = [e for e in ordered if e.id in only]
        if not ordered:
            raise RunStateError(f"none of the keeps asked for is a keep of run {view.tag}")
    commits: list[str] = []
    parent = start
    if squash:
        body = "\n".join(f"- {e.hypothesis} (experiment {e.id})" for e in ordered)
        first, last = ordered[0], ordered[-1]
        start_value = view.parent_metric(first)
        summary = (
            f"{view.metric} {start_value:.6g} -> {last.metric:.6g}"
            if start_value is not None and last.metric is not None
            else view.metric
        )
        message = f"overnight run {view.tag}: {len(ordered)} kept changes, {summary}\n\n{body}\n"
        commits.append(_commit_tree(view, trees[ordered[-1].id], parent, message))
    else:
        for e in ordered:
            parent = _commit_tree(view, trees[e.id], parent, _message(view, e))
            commits.append(parent)
    git.update_ref(root, f"refs/heads/{branch}", commits[-1], old)
    return Finalized(branch, commits, [e.id for e in ordered])
