"""Promotion, rollback and status as git operations: decide, edit the stack config, commit, push, PR.

Every run starts from the remote's main branch (fetched), computes the new state, and writes it once.
Nothing is checked out and no local branch is made, so a run that stops half-way leaves either
nothing or a pushed commit that the next run recognises and finishes: a promotion's pushed branch
gets its pull request, a rollback's pending-apply record (``pending.py``) gets its apply.

Side effects after the work (notifications) never fail the command: a failed one is a warning.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from rollout_policies.core import (
    Action,
    Evidence,
    LifecycleRefused,
    StageDecision,
    advance,
    decide,
    finalize_target,
    hold_paused,
    needs_rollback,
    release_start_target,
    retry_target,
    rollback_target,
)
from rollout_policies.core.progression import Move, Transition
from rollout_policies.errors import UserError
from rollout_policies.gitops.comparison_memory import ComparisonMemory
from rollout_policies.gitops.forge import Forge, PullRequest
from rollout_policies.gitops.ledger import DecisionLedger
from rollout_policies.gitops.notify import DecisionNotice, Notifier, decision_signature
from rollout_policies.gitops.pending import PendingApplies
from rollout_policies.gitops.repo import Commit, GitRepo, PushRejected, commit_message
from rollout_policies.gitops.report import pull_body
from rollout_policies.gitops.seams import Applier, ApplyError, LiveState, NoLiveState, read_live
from rollout_policies.gitops.stack_config import (
    changed_lines,
    config_name,
    read_state,
    render_state,
    state_from_text,
)
from rollout_policies.plan.model import Plan
from rollout_policies.state import RolloutState

log = logging.getLogger("rollout.gitops")

TRAILER_PREFIX = "Rollout-"
# A race loser re-reads the remote and decides again; more rounds than this means something is wrong.
MAX_ROUNDS = 4


def default_actor() -> str:
    """Who runs this: the CI actor, else the login, with the host (for the audit trail)."""
    who = os.environ.get("GITHUB_ACTOR") or getpass.getuser()
    return f"{who}@{socket.gethostname()}"


def branch_for(stack: str, state: RolloutState) -> str:
    """The promotion branch for a target state: ``rollout/<stack>/<stage>-step-<n>``."""
    return f"rollout/{stack}/{state.stage}-step-{state.step}"


def _same_target(a: RolloutState, b: RolloutState) -> bool:
    """Two proposals move traffic the same way (their clocks may differ by who ran first)."""
    keys = ("stage", "step", "stable", "candidate", "weights")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


@dataclass(frozen=True)
class PromotionOutcome:
    """What ``promote`` did for one stack. ``result`` is one word a script can branch on."""

    stack: str
    decision: StageDecision
    result: str  # proposed | already-proposed | lost-race | held | rollback-needed | complete | dry-run
    message: str
    branch: str | None = None
    commit: str | None = None
    pull: PullRequest | None = None
    diff: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class RollbackOutcome:
    stacks: tuple[str, ...]
    result: str  # rolled-back | already-rolled-back | dry-run
    message: str
    commit: str | None
    applied: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class PauseOutcome:
    """What ``pause`` or ``resume`` did. ``result`` is one word a script can branch on."""

    verb: str  # pause | resume
    stacks: tuple[str, ...]
    result: str  # paused | resumed | already-paused | not-paused | dry-run
    message: str
    commit: str | None
    changed: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class LifecycleOutcome:
    """What ``release start``, ``release finalize`` or ``retry`` did. ``result`` is one word."""

    verb: str  # release-start | release-finalize | retry
    stacks: tuple[str, ...]
    result: str  # started | finalized | already-finalized | retried | dry-run
    message: str
    commit: str | None
    changed: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _StateChange:
    """What ``_commit_state_change`` did: the stacks it read, the ones it changed, every state before
    and after, its commit (None when nothing changed or on a dry run) and its warnings."""

    stacks: tuple[str, ...]
    changed: tuple[str, ...]
    befores: dict[str, RolloutState]
    afters: dict[str, RolloutState]
    commit: str | None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _RollbackWrite:
    """What the rollback wrote: its commit (None when nothing needed one), the stacks it changed,
    and every stack's state before."""

    sha: str | None
    changed: tuple[str, ...]
    befores: dict[str, RolloutState]


@dataclass(frozen=True)
class StackStatus:
    stack: str
    state: RolloutState
    commit: str | None  # the main-branch commit that last changed the stack config
    last_decision: str | None
    last_decision_commit: str | None
    last_decision_at: str | None
    last_decision_by: str | None
    pending: tuple[str, ...]  # promotion branches waiting on the remote
    live: dict[str, int] | None
    drift: str  # in-sync | drift | unknown
    pending_apply: str | None = None  # a pushed rollback commit not yet applied (pending.py)
    live_unknown_why: str | None = None  # when live is None: why the cluster's weights are unknown


@dataclass
class GitOps:
    """The git side of the rollout for one repository and plan."""

    repo: GitRepo
    plan: Plan
    config_dir: str = ""  # where the Pulumi.<stack>.yaml files are, relative to the repository root
    forge: Forge | None = None
    reviewers: tuple[str, ...] = ()
    notifier: Notifier | None = None
    actor: str = field(default_factory=default_actor)
    # Where the last posted decision per stack is kept (git), so a repeated one is not posted again.
    ledger: DecisionLedger | None = None
    # Where the promotion's HTML gate report can be read (a CI run's artifacts); linked from the PR body.
    report_link: str = ""
    # Comparison gates' test states between this object's decisions (memory only): a process that
    # decides every minute then feeds each gate only the newest intervals, not the whole stage.
    comparisons: ComparisonMemory = field(default_factory=ComparisonMemory)

    def path(self, stack: str) -> str:
        return f"{self.config_dir.strip('/')}/{config_name(stack)}".lstrip("/")

    @property
    def main_ref(self) -> str:
        return self.repo.remote_ref(self.repo.main)

    def _base(self) -> str:
        base = self.repo.sha(self.main_ref)
        if base is None:
            raise UserError(
                f"--repo {self.repo.path}: remote {self.repo.remote} has no branch {self.repo.main}"
            )
        return base

    def _state_at(self, ref: str, stack: str) -> tuple[str, RolloutState]:
        path = self.path(stack)
        text = self.repo.show(ref, path)
        if text is None:
            raise UserError(f"--stack {stack}: {path} is not on {self.repo.remote}/{self.repo.main}")
        return text, state_from_text(text, path)

    def _notify(self, notice: DecisionNotice) -> tuple[str, ...]:
        """Send a notice; any failure is a warning, never an error: the decision is already made."""
        if self.notifier is None:
            return ()
        try:
            return tuple(self.notifier.notify(notice))
        except Exception as err:  # a notification must never undo or fail the work it reports
            return (f"notification failed: {type(err).__name__}",)

    @property
    def pending(self) -> PendingApplies:
        return PendingApplies(self.repo.git_dir() / "rollout" / "pending-apply")

    def finish_pending_applies(self, applier: Applier, stacks: Sequence[str]) -> tuple[str, ...]:
        """Apply the stacks whose rollback reached main but not the cluster (a run killed before its apply).

        Returns the stacks applied. A record whose commit never reached main (killed before the push)
        is dropped. The apply makes the cluster serve what main says now.
        """
        records = {stack: record for stack, record in self.pending.all().items() if stack in stacks}
        if not records:
            return ()
        self.repo.fetch()
        todo = []
        for stack, record in records.items():
            if record.commit and not self.repo.is_ancestor(record.commit, self.main_ref):
                log.warning(
                    "%s: dropped pending apply of %s: it never reached main", stack, record.commit[:12]
                )
                self.pending.clear([stack], record.commit)
            else:
                todo.append(stack)
        if not todo:
            return ()
        self.repo.fast_forward_checkout(self.repo.main)
        self._check_worktree_matches_main(todo)
        for stack in todo:
            applier.apply_traffic(stack)
            self.pending.clear([stack])
            log.warning("%s: finished the pending apply of %s", stack, records[stack].commit[:12] or "main")
        return tuple(todo)

    # -- promote -----------------------------------------------------------------------------------

    def promote(
        self,
        stack: str,
        evidence_for: Callable[[RolloutState], Evidence],
        *,
        now: datetime,
        dry_run: bool = False,
        open_pull: bool = True,
    ) -> PromotionOutcome:
        """Decide for a stack; on promote propose the next step as a branch and a pull request."""
        lost = False
        for _ in range(MAX_ROUNDS):
            self.repo.fetch()
            try:
                outcome = self._promote_once(stack, evidence_for, now=now, dry_run=dry_run, lost=lost)
            except PushRejected:
                # Another run pushed the same branch (or main moved) between our read and our push:
                # read the remote again and decide again from what it now says.
                lost = True
                continue
            if outcome.result in ("proposed", "already-proposed", "lost-race") and open_pull:
                outcome = self._ensure_pull(outcome)
            if not dry_run:
                outcome = self._notify_promotion(outcome)
            return outcome
        raise UserError(f"--stack {stack}: the remote kept changing; gave up after {MAX_ROUNDS} rounds")

    def _promote_once(
        self,
        stack: str,
        evidence_for: Callable[[RolloutState], Evidence],
        *,
        now: datetime,
        dry_run: bool,
        lost: bool,
    ) -> PromotionOutcome:
        base = self._base()
        text, state = self._state_at(base, stack)
        decision = decide(
            self.plan,
            state.stage,
            state.step,
            evidence_for(state),
            now=now,
            stage_started_at=state.stage_started_at,
            step_started_at=state.step_started_at,
            comparison_states=self.comparisons.states(stack, state.stage, state.stage_started_at),
        )
        self.comparisons.keep(stack, state.stage, state.stage_started_at, decision.gates)
        where = f"{state.stage} step {state.step}"
        if state.paused:
            decision = hold_paused(decision, self._pause_reason(stack, base))
            if decision.action is Action.HOLD:
                return PromotionOutcome(
                    stack,
                    decision,
                    "held",
                    f"{stack}: paused at {where}; no branch made (`rollout resume` lifts it)",
                )
        if decision.action is Action.ROLLBACK:
            return PromotionOutcome(
                stack, decision, "rollback-needed", f"{stack}: rollback needed at {where}; nothing proposed"
            )
        if decision.action is Action.HOLD and not decision.awaiting_signoff_only:
            return PromotionOutcome(stack, decision, "held", f"{stack}: hold at {where}; no branch made")
        transition = advance(self.plan, state, Action.PROMOTE, now)
        if transition.move is Move.COMPLETE:
            return PromotionOutcome(stack, decision, "complete", f"{stack}: {transition.description}")
        branch = branch_for(stack, transition.state)
        path = self.path(stack)
        new_text = render_state(text, transition.state, path)
        diff = tuple(changed_lines(text, new_text))
        signoff = " (awaiting sign-off)" if decision.awaiting_signoff_only else ""

        existing = self.repo.sha(self.repo.remote_ref(branch))
        # A branch already merged into main is history (the stack was rolled back and is promoted
        # again): replace it rather than adopt it.
        stale = existing is not None and self.repo.is_ancestor(existing, base)
        if existing is not None and not stale:
            theirs = self.repo.show(existing, path)
            if theirs is None or not _same_target(
                state_from_text(theirs, f"{branch}:{path}"), transition.state
            ):
                raise UserError(
                    f"--stack {stack}: branch {branch} on {self.repo.remote} holds a different change "
                    f"({existing[:12]}); merge or delete it first"
                )
            result = "lost-race" if lost else "already-proposed"
            return PromotionOutcome(
                stack,
                decision,
                result,
                f"{stack}: {transition.description} already proposed in {existing[:12]} on {branch}{signoff}",
                branch=branch,
                commit=existing,
                diff=diff,
            )
        if dry_run:
            return PromotionOutcome(
                stack,
                decision,
                "dry-run",
                f"{stack}: would propose {transition.description} on {branch}{signoff}",
                branch=branch,
                diff=diff,
            )
        message = self._promotion_message(stack, state, transition, decision)
        sha = self.repo.commit_files(base, {path: new_text}, message, when=now.isoformat())
        self.repo.push(sha, branch, expect=existing if stale else None)
        return PromotionOutcome(
            stack,
            decision,
            "proposed",
            f"{stack}: proposed {transition.description} as {sha[:12]} on {branch}{signoff}",
            branch=branch,
            commit=sha,
            diff=diff,
        )

    def _promotion_message(
        self, stack: str, before: RolloutState, transition: Transition, decision: StageDecision
    ) -> str:
        after = transition.state
        body = [
            f"Plan {self.plan.name} decided {decision.action.value} for stack {stack} at "
            f"{before.stage} step {before.step}; this moves it to {after.stage} step {after.step} "
            f"({after.candidate.version} on {after.candidate.colour.value} gets {after.candidate_weight}%).",
            "",
            "Reasons:",
            *[f"- {reason}" for reason in decision.reasons],
        ]
        trailers = [
            ("Rollout-Plan", self.plan.name),
            ("Rollout-Stack", stack),
            ("Rollout-Stage", after.stage),
            ("Rollout-Step", str(after.step)),
            ("Rollout-Weights", _weights_text(after)),
            ("Rollout-Decision", "promote"),
            ("Rollout-Reasons", "; ".join(r.code.value for r in decision.reasons)),
            ("Rollout-Actor", self.actor),
            ("Rollout-At", decision.now.isoformat()),
            ("Rollout-Run", uuid.uuid4().hex[:12]),
        ]
        return commit_message(f"rollout({stack}): promote to {transition.description}", body, trailers)

    def _ensure_pull(self, outcome: PromotionOutcome) -> PromotionOutcome:
        if self.forge is None or outcome.branch is None:
            return outcome
        _, state = self._state_at(self.main_ref, outcome.stack)
        target = advance(self.plan, state, Action.PROMOTE, outcome.decision.now)
        body = pull_body(
            plan=self.plan.name,
            stack=outcome.stack,
            before=state,
            transition=target,
            decision=outcome.decision,
            reviewers=self.reviewers,
            config_path=self.path(outcome.stack),
            report_link=self.report_link,
        )
        pull = self.forge.open_pull(
            title=f"rollout({outcome.stack}): {target.description}",
            body=body,
            head=outcome.branch,
            base=self.repo.main,
            reviewers=self.reviewers,
        )
        self.repo.hook("pr_opened")
        return _replace(
            outcome, pull=pull, message=f"{outcome.message}; pull request #{pull.number} {pull.url}"
        )

    def _notify_promotion(self, outcome: PromotionOutcome) -> PromotionOutcome:
        decision = outcome.decision
        signature = decision_signature(decision.action.value, decision.stage, decision.step, decision.reasons)
        if self.ledger is not None and self.ledger.last(outcome.stack) == signature:
            # Notifications follow changes of state: the same decision for the same reasons as the
            # last one posted is already known to everyone who reads the channel.
            return _replace(outcome, message=f"{outcome.message} (unchanged since the last post: not posted)")
        warnings = self._notify(
            DecisionNotice(
                plan=self.plan.name,
                stacks=(outcome.stack,),
                decision=decision.action.value,
                stage=decision.stage,
                step=decision.step,
                summary=outcome.message,
                reasons=tuple(str(r) for r in decision.reasons),
                actor=self.actor,
                at=decision.now,
                commit=outcome.commit,
                link=outcome.pull.url if outcome.pull else None,
            )
        )
        # Only what was delivered is recorded: a failed post is tried again by the next run.
        delivered = self.notifier is not None and not warnings
        note = f"rollout({outcome.stack}): posted {signature}"
        recorded = not delivered or self.ledger is None or self.ledger.record(outcome.stack, signature, note)
        if not recorded:
            warnings += ("could not record the posted decision in git; the next run may post it again",)
        return _replace(outcome, warnings=outcome.warnings + warnings)

    # -- rollback ----------------------------------------------------------------------------------

    def _check_worktree_matches_main(self, stacks: Sequence[str]) -> None:
        """The applier reads the working tree: refuse to apply anything but what main says."""
        for stack in stacks:
            path = self.path(stack)
            _, committed = self._state_at(self.main_ref, stack)
            try:
                on_disk = read_state(self.repo.path / path)
            except UserError:
                on_disk = None
            if on_disk != committed:
                why = self.repo.last_checkout_problem or "local edits, or not on the main branch"
                raise ApplyError(
                    f"--apply: {self.repo.path / path} differs from {self.repo.remote}/{self.repo.main} "
                    f"({why}); git holds the rollback: apply from a clean checkout of main"
                )

    def rollback(
        self,
        stacks: Sequence[str],
        *,
        reason: str,
        now: datetime,
        evidence: Sequence[str] = (),
        applier: Applier | None = None,
        dry_run: bool = False,
        pause: bool = False,
    ) -> RollbackOutcome:
        """Every user of every stack back on stable in ONE commit straight to main; then apply.

        With ``pause`` (``rollout abort``) the same commit also sets ``paused``, so no promotion run
        resumes the stack until a person runs ``rollout resume``; its decision is ``abort``.

        "Every user" is the weights (0% candidate), the beta cohort route and the stage's feature
        flags: the commit sets ``rolledBack``, the program drops the cohort rule and serves the
        stable flags for it, and the apply makes all three live at once. A stack already rolled
        back is left alone; when all are, git gets no commit (the apply still runs, so a crash
        after the push is finished by running the same command again).
        """
        if not reason.strip():
            raise UserError("--reason: say why (it goes into the commit and the page)")
        stacks = tuple(dict.fromkeys(stacks))
        verb = "abort" if pause else "rollback"
        written = self._write_rollback(
            stacks, reason=reason, evidence=evidence, now=now, dry_run=dry_run, applier=applier, pause=pause
        )
        if dry_run:
            what = ", ".join(written.changed) or "nothing"
            return RollbackOutcome(
                stacks, "dry-run", f"would {'abort' if pause else 'roll back'} {what}", None
            )
        warnings: tuple[str, ...] = ()
        if written.sha is not None:
            try:
                self.repo.fetch()
            except UserError as err:
                if applier is not None:
                    raise
                warnings += (f"fetch after the push failed ({err}); the rollback is on {self.repo.main}",)
        # The working tree an applier reads must hold the rollback before the apply.
        self.repo.fast_forward_checkout(self.repo.main)
        if written.sha is None:
            last = self.last_decision(stacks[0], kinds=("rollback", "abort"))
            where = f" by {last.sha[:12]}" if last is not None else ""
            already = "already rolled back and paused" if pause else "already rolled back"
            result = "already-aborted" if pause else "already-rolled-back"
            message = f"{already}{where}: {', '.join(stacks)}"
        else:
            result = "aborted" if pause else "rolled-back"
            done = "aborted (rolled back and paused)" if pause else "rolled back"
            message = f"{done} {', '.join(written.changed)} in {written.sha[:12]} on {self.repo.main}"
        applied = self._make_live(stacks, applier)
        if applied:
            message += f"; traffic and flags applied to {', '.join(applied)}"
        warnings += self._notify_rollback(written, reason, evidence, now, applied, verb)
        return RollbackOutcome(stacks, result, message, written.sha, applied, warnings)

    def _rollback_files(
        self, base: str, stacks: Sequence[str], now: datetime, pause: bool = False
    ) -> tuple[dict[str, str], dict[str, RolloutState]]:
        """The new text of every stack config that still lets users reach the candidate (or, with
        ``pause``, is not yet paused), and every stack's state before (the decision is the core's
        ``needs_rollback`` / ``rollback_target``)."""
        files: dict[str, str] = {}
        befores: dict[str, RolloutState] = {}
        for stack in stacks:
            text, state = self._state_at(base, stack)
            befores[stack] = state
            target = rollback_target(self.plan, state, now) if needs_rollback(self.plan, state) else state
            if pause and not target.paused:
                target = RolloutState.model_validate({**target.model_dump(), "paused": True})
            if target != state:
                files[self.path(stack)] = render_state(text, target, self.path(stack))
        return files, befores

    def _write_rollback(
        self,
        stacks: tuple[str, ...],
        *,
        reason: str,
        evidence: Sequence[str],
        now: datetime,
        dry_run: bool,
        applier: Applier | None,
        pause: bool = False,
    ) -> _RollbackWrite:
        """The one commit on main (none when nothing needs it), re-read and retried while main moves.

        With an applier, a pending-apply record is written before the push (``pending.py``): once
        the commit can be on main, the next run with an applier knows to apply it.
        """
        for _ in range(MAX_ROUNDS):
            self.repo.fetch()
            base = self._base()
            files, befores = self._rollback_files(base, stacks, now, pause)
            changed = tuple(s for s in stacks if self.path(s) in files)
            if not files or dry_run:
                return _RollbackWrite(None, changed, befores)
            message = self._rollback_message(changed, befores, reason, evidence, now, pause)
            candidate = self.repo.commit_files(base, files, message, when=now.isoformat())
            if applier is not None:
                # Written before the push: once the commit can be on main, a record says to apply it.
                self.pending.record(changed, candidate, now.isoformat())
            try:
                self.repo.push(candidate, self.repo.main, expect=base)
            except PushRejected:
                if applier is not None:
                    self.pending.clear(changed, candidate)
                continue  # main moved: re-read it; the stacks may already be rolled back by the winner
            # Any other failure leaves the record: whether the push landed, the next run reads from main.
            return _RollbackWrite(candidate, changed, befores)
        raise UserError(f"rollback: {self.repo.main} kept moving; gave up after {MAX_ROUNDS} rounds")

    def _make_live(self, stacks: Sequence[str], applier: Applier | None) -> tuple[str, ...]:
        """Apply each stack's traffic and flags from a working tree that matches main; each applied
        stack's pending-apply record is cleared, a failed one keeps it for the next run."""
        if applier is None:
            return ()
        self._check_worktree_matches_main(stacks)
        applied: list[str] = []
        for stack in stacks:
            try:
                applier.apply_traffic(stack)
            except ApplyError as err:
                raise ApplyError(
                    f"{err} (the rollback is on {self.repo.main}; the apply of {stack} is pending and "
                    "the next run with an applier finishes it)"
                ) from None
            self.pending.clear([stack])
            applied.append(stack)
        self.repo.hook("applied")
        return tuple(applied)

    def _notify_rollback(
        self,
        written: _RollbackWrite,
        reason: str,
        evidence: Sequence[str],
        now: datetime,
        applied: tuple[str, ...],
        verb: str = "rollback",
    ) -> tuple[str, ...]:
        """A rollback that changed git is news; "already rolled back" is not posted again."""
        if written.sha is None:
            return ()
        first = written.befores[written.changed[0]]
        stale = self._close_stale_promotions(written.changed, written.sha, reason, verb)
        return stale + self._notify(
            DecisionNotice(
                plan=self.plan.name,
                stacks=written.changed,
                decision=verb,
                stage=first.stage,
                step=first.step,
                summary=reason,
                reasons=(reason, *evidence),
                actor=self.actor,
                at=now,
                commit=written.sha,
                details={"applied": list(applied)},
            )
        )

    def _close_stale_promotions(
        self, stacks: Sequence[str], sha: str, reason: str, verb: str = "rollback"
    ) -> tuple[str, ...]:
        """Close each open promotion pull request of a rolled-back stack, with a comment linking the
        rollback commit (merging it would put back the candidate that was just taken off), and delete
        its branch (leased on what it held) so `status` no longer lists it and the next promotion
        proposes a fresh one from the rolled-back state. A forge failure is a warning only; without a
        forge the branches stay and a warning says so."""
        warnings: list[str] = []
        done = "aborted (rolled back and paused)" if verb == "abort" else "rolled back"
        forge = self.forge
        for stack in stacks:
            branches = self.repo.remote_branches(f"rollout/{stack}/")
            if branches and forge is None:
                warnings.append(
                    f"forge: not configured: {', '.join(sorted(branches))} left open "
                    "(give --forge-repo and the forge token to close stale promotions)"
                )
                continue
            for branch, head in sorted(branches.items()):
                if forge is None:
                    continue
                try:
                    pull = forge.find_pull(branch)
                    if pull is not None:
                        forge.comment(
                            pull.number,
                            f"**Stale: {stack} was {done}** in {sha[:12]} on {self.repo.main} "
                            f"({reason}). Closed: merging this promotion would put the candidate back; "
                            "the next promotion run proposes a fresh one from the rolled-back state.",
                        )
                        forge.close_pull(pull.number)
                    self.repo.delete_remote_branch(branch, expect=head)
                except (UserError, PushRejected) as err:
                    warnings.append(f"forge: {branch}: {err}")
        return tuple(warnings)

    def _rollback_message(
        self,
        stacks: Sequence[str],
        befores: dict[str, RolloutState],
        reason: str,
        evidence: Sequence[str],
        now: datetime,
        pause: bool = False,
    ) -> str:
        kind = "Abort" if pause else "Break-glass rollback"
        paused = "; paused: no promotion until `rollout resume`" if pause else ""
        body = [
            f"{kind} by {self.actor} at {now.isoformat()}: every user on stable "
            f"(100% weight, no cohort route, stable flags) on {', '.join(stacks)}{paused}.",
            "",
            f"Why: {reason}",
        ]
        for stack in stacks:
            state = befores[stack]
            body.append(
                f"- {stack}: was {state.stage} step {state.step} with {state.candidate.version} "
                f"({state.candidate.colour.value}) at {state.candidate_weight}% and the beta cohort; "
                f"now {state.stable.version} ({state.stable.colour.value}) for every user, no cohort "
                "route, stable feature flags"
            )
        if evidence:
            body += ["", "Evidence:", *[f"- {item}" for item in evidence]]
        trailers = [("Rollout-Plan", self.plan.name)]
        trailers += [("Rollout-Stack", stack) for stack in stacks]
        first = befores[stacks[0]]
        trailers += [
            ("Rollout-Stage", first.stage),
            ("Rollout-Step", "0"),
            ("Rollout-Weights", f"{first.stable.colour.value}=100,{first.candidate.colour.value}=0"),
            ("Rollout-Decision", "abort" if pause else "rollback"),
            ("Rollout-Rolled-Back", "true"),
            *([("Rollout-Paused", "true")] if pause else []),
            ("Rollout-Reason", reason),
            *[("Rollout-Evidence", item) for item in evidence],
            ("Rollout-Actor", self.actor),
            ("Rollout-At", now.isoformat()),
        ]
        how = "abort: paused until resumed" if pause else "break-glass"
        subject = f"rollout({','.join(stacks)}): roll back to {first.stable.version} ({how})"
        return commit_message(subject, body, trailers)

    # -- pause and resume --------------------------------------------------------------------------

    def pause(
        self, stacks: Sequence[str], *, reason: str, now: datetime, dry_run: bool = False
    ) -> PauseOutcome:
        """Stop promotions of the stacks until a resume: ONE commit on main setting ``paused``.

        Traffic is not touched (nothing to apply), and a rollback still happens when one is needed.
        """
        return self._set_paused(stacks, True, reason=reason, now=now, dry_run=dry_run)

    def resume(
        self, stacks: Sequence[str], *, reason: str, now: datetime, dry_run: bool = False
    ) -> PauseOutcome:
        """Let the scheduled promotion decide for the stacks again: ONE commit on main clearing ``paused``."""
        return self._set_paused(stacks, False, reason=reason, now=now, dry_run=dry_run)

    def _set_paused(
        self, stacks: Sequence[str], paused: bool, *, reason: str, now: datetime, dry_run: bool
    ) -> PauseOutcome:
        verb = "pause" if paused else "resume"
        if not reason.strip():
            raise UserError(f"--reason: say why (it goes into the {verb} commit)")

        def flipped(stack: str, state: RolloutState) -> RolloutState:
            if state.paused == paused:
                return state
            return RolloutState.model_validate({**state.model_dump(), "paused": paused})

        change = self._commit_state_change(
            verb,
            stacks,
            flipped,
            message=lambda changed, befores, _: self._pause_message(verb, changed, befores, reason, now),
            reason=reason,
            now=now,
            dry_run=dry_run,
        )
        stacks, changed = change.stacks, change.changed
        if not changed:
            already = "already-paused" if paused else "not-paused"
            words = "already paused" if paused else "not paused"
            text = f"{', '.join(stacks)} {words}; nothing committed"
            return PauseOutcome(verb, stacks, already, text, None)
        if change.commit is None:
            return PauseOutcome(verb, stacks, "dry-run", f"would {verb} {', '.join(changed)}", None, changed)
        done = "paused" if paused else "resumed"
        text = f"{done} {', '.join(changed)} in {change.commit[:12]} on {self.repo.main}"
        return PauseOutcome(verb, stacks, done, text, change.commit, changed, change.warnings)

    def _pause_message(
        self,
        verb: str,
        stacks: Sequence[str],
        befores: dict[str, RolloutState],
        reason: str,
        now: datetime,
    ) -> str:
        what = (
            "the scheduled promotion holds (reason paused) until `rollout resume`; traffic is unchanged"
            if verb == "pause"
            else "the scheduled promotion decides again from the gates; traffic is unchanged"
        )
        body = [
            f"{verb.capitalize()} by {self.actor} at {now.isoformat()} of {', '.join(stacks)}: {what}.",
            "",
        ]
        body += [f"Why: {reason}", ""]
        for stack in stacks:
            state = befores[stack]
            body.append(
                f"- {stack}: {state.stage} step {state.step}, {state.candidate.version} "
                f"({state.candidate.colour.value}) at {state.candidate_weight}%"
            )
        first = befores[stacks[0]]
        trailers = [("Rollout-Plan", self.plan.name)]
        trailers += [("Rollout-Stack", stack) for stack in stacks]
        trailers += [
            ("Rollout-Stage", first.stage),
            ("Rollout-Step", str(first.step)),
            ("Rollout-Weights", _weights_text(first)),
            ("Rollout-Decision", verb),
            ("Rollout-Paused", "true" if verb == "pause" else "false"),
            ("Rollout-Reason", reason),
            ("Rollout-Actor", self.actor),
            ("Rollout-At", now.isoformat()),
        ]
        where = f"{first.stage} step {first.step}"
        return commit_message(f"rollout({','.join(stacks)}): {verb} at {where}", body, trailers)

    def _pause_reason(self, stack: str, ref: str) -> str:
        """Why the stack is paused, from the commit that paused it (who, and their reason)."""
        commit = self.last_decision(stack, ref, kinds=("pause", "abort"))
        if commit is not None:
            who = commit.trailer("Rollout-Actor") or "someone"
            return f"paused by {who} in {commit.sha[:12]}: {commit.trailer('Rollout-Reason') or 'no reason'}"
        return "paused (the stack config says so; no pause commit names a reason)"

    # -- the release lifecycle: start, finalize, retry ---------------------------------------------

    def release_start(
        self, stacks: Sequence[str], *, version: str, reason: str, now: datetime, dry_run: bool = False
    ) -> LifecycleOutcome:
        """Start the next release on stacks whose last one is over (finalized, or rolled back): what
        serves every user becomes stable, ``version`` the candidate on the other colour, at the first
        stage's step 0. ONE commit on main; any other stack state is refused, naming where it is."""
        return self._lifecycle(
            "release-start",
            stacks,
            lambda state: release_start_target(self.plan, state, version, now),
            reason=reason.strip() or f"start release {version.strip()}",
            now=now,
            dry_run=dry_run,
        )

    def release_finalize(
        self, stacks: Sequence[str], *, reason: str, now: datetime, dry_run: bool = False
    ) -> LifecycleOutcome:
        """Record the release as finished (``released``) at the last step with 100% candidate: ONE
        commit on main; traffic is unchanged. Finalizing a finalized stack commits nothing."""
        return self._lifecycle(
            "release-finalize",
            stacks,
            lambda state: finalize_target(self.plan, state),
            reason=reason.strip() or "the release serves every user",
            now=now,
            dry_run=dry_run,
        )

    def retry(
        self, stacks: Sequence[str], *, reason: str, now: datetime, dry_run: bool = False
    ) -> LifecycleOutcome:
        """After a rollback, the stage again from its first step with fresh clocks: ONE commit on main.
        Refused unless the stack is rolled back and not paused."""
        return self._lifecycle(
            "retry",
            stacks,
            lambda state: retry_target(self.plan, state, now),
            reason=reason.strip() or "retry after the rollback",
            now=now,
            dry_run=dry_run,
        )

    def _lifecycle(
        self,
        verb: str,
        stacks: Sequence[str],
        target_for: Callable[[RolloutState], RolloutState],
        *,
        reason: str,
        now: datetime,
        dry_run: bool,
    ) -> LifecycleOutcome:
        """Refuse the whole run if one stack may not take the verb; else one state change on main."""

        def target(stack: str, state: RolloutState) -> RolloutState:
            try:
                return target_for(state)
            except LifecycleRefused as err:
                raise UserError(f"stack {stack} {err}") from None

        def stale_branches(changed: tuple[str, ...]) -> tuple[str, ...]:
            warnings: tuple[str, ...] = ()
            for stack in changed if verb != "release-finalize" else ():
                # Left by a rollback without a forge: made from the old state, they would collide
                # with this release's promotions.
                left = sorted(self.repo.remote_branches(f"rollout/{stack}/"))
                if left:
                    warnings += (f"stale promotion branches still on the remote: {', '.join(left)}",)
            return warnings

        change = self._commit_state_change(
            verb,
            stacks,
            target,
            message=lambda changed, befores, afters: self._lifecycle_message(
                verb, changed, befores, afters, reason, now
            ),
            reason=reason,
            now=now,
            dry_run=dry_run,
            checks=stale_branches,
        )
        stacks, changed = change.stacks, change.changed
        if not changed:
            text = f"{', '.join(stacks)} already finalized; nothing committed"
            return LifecycleOutcome(verb, stacks, "already-finalized", text, None)
        if change.commit is None:
            words = {"release-start": "start the release on", "release-finalize": "finalize"}
            text = f"would {words.get(verb, verb)} {', '.join(changed)}"
            return LifecycleOutcome(verb, stacks, "dry-run", text, None, changed)
        done = _LIFECYCLE_DONE[verb]
        text = f"{done} {', '.join(changed)} in {change.commit[:12]} on {self.repo.main}"
        return LifecycleOutcome(verb, stacks, done, text, change.commit, changed, change.warnings)

    def _commit_state_change(
        self,
        verb: str,
        stacks: Sequence[str],
        target_for: Callable[[str, RolloutState], RolloutState],
        *,
        message: Callable[[tuple[str, ...], dict[str, RolloutState], dict[str, RolloutState]], str],
        reason: str,
        now: datetime,
        dry_run: bool,
        checks: Callable[[tuple[str, ...]], tuple[str, ...]] = lambda changed: (),
    ) -> _StateChange:
        """Commit a state change: read every stack from main, write the changed ones in ONE commit
        (read again and retried while main moves), fetch it back, run ``checks`` (warnings), notify.

        Pause, resume, release start and finalize, and retry are each this with their own target and
        message. Nothing is written when no stack changes or on a dry run (the result's commit is None).
        """
        stacks = tuple(dict.fromkeys(stacks))
        for _ in range(MAX_ROUNDS):
            self.repo.fetch()
            base = self._base()
            files: dict[str, str] = {}
            befores: dict[str, RolloutState] = {}
            afters: dict[str, RolloutState] = {}
            for stack in stacks:
                text, state = self._state_at(base, stack)
                befores[stack] = state
                afters[stack] = target_for(stack, state)
                if afters[stack] != state:
                    files[self.path(stack)] = render_state(text, afters[stack], self.path(stack))
            changed = tuple(stack for stack in stacks if self.path(stack) in files)
            if not changed or dry_run:
                return _StateChange(stacks, changed, befores, afters, None)
            text = message(changed, befores, afters)
            sha = self.repo.commit_files(base, files, text, when=now.isoformat())
            try:
                self.repo.push(sha, self.repo.main, expect=base)
            except PushRejected:
                continue  # main moved: read it again (the stacks may have moved meanwhile)
            warnings: tuple[str, ...] = ()
            try:
                self.repo.fetch()
                self.repo.fast_forward_checkout(self.repo.main)
            except UserError as err:
                warnings += (f"fetch after the push failed ({err}); the {verb} is on {self.repo.main}",)
            warnings += checks(changed)
            first = afters[changed[0]]
            warnings += self._notify(
                DecisionNotice(
                    plan=self.plan.name,
                    stacks=changed,
                    decision=verb,
                    stage=first.stage,
                    step=first.step,
                    summary=reason,
                    reasons=(reason,),
                    actor=self.actor,
                    at=now,
                    commit=sha,
                )
            )
            return _StateChange(stacks, changed, befores, afters, sha, warnings)
        raise UserError(f"{verb}: {self.repo.main} kept moving; gave up after {MAX_ROUNDS} rounds")

    def _lifecycle_message(
        self,
        verb: str,
        stacks: Sequence[str],
        befores: dict[str, RolloutState],
        afters: dict[str, RolloutState],
        reason: str,
        now: datetime,
    ) -> str:
        after = afters[stacks[0]]
        new, old = after.candidate, after.stable
        what = {
            "release-start": f"start release {new.version} ({new.colour.value}) "
            f"over {old.version} ({old.colour.value}) at {after.stage} step 0",
            "release-finalize": f"finalize release {new.version} ({new.colour.value})",
            "retry": f"retry {after.stage} from step 0 ({after.candidate_weight}% candidate)",
        }[verb]
        body = [
            f"{verb.capitalize()} by {self.actor} at {now.isoformat()} of {', '.join(stacks)}: {what}.",
            "",
        ]
        body += [f"Why: {reason}", ""]
        for stack in stacks:
            before, target = befores[stack], afters[stack]
            body.append(f"- {stack}: was {_described(before)}; now {_described(target)}")
        trailers = [("Rollout-Plan", self.plan.name)]
        trailers += [("Rollout-Stack", stack) for stack in stacks]
        trailers += [
            ("Rollout-Stage", after.stage),
            ("Rollout-Step", str(after.step)),
            ("Rollout-Weights", _weights_text(after)),
            ("Rollout-Decision", verb),
        ]
        if verb == "release-start":
            trailers += [
                ("Rollout-Version", after.candidate.version),
                ("Rollout-Stable", after.stable.version),
            ]
        if verb == "release-finalize":
            trailers.append(("Rollout-Released", after.candidate.version))
        trailers += [
            ("Rollout-Reason", reason),
            ("Rollout-Actor", self.actor),
            ("Rollout-At", now.isoformat()),
        ]
        return commit_message(f"rollout({','.join(stacks)}): {what}", body, trailers)

    # -- status ------------------------------------------------------------------------------------

    def last_decision(
        self, stack: str, ref: str | None = None, kinds: tuple[str, ...] | None = None
    ) -> Commit | None:
        """The newest commit on main that changed this stack's config with a rollout decision (one
        of ``kinds`` when given: promote, rollback, abort, pause, resume, release-start,
        release-finalize, retry)."""
        for commit in self.repo.trailers(ref or self.main_ref, self.path(stack)):
            decision = commit.trailer("Rollout-Decision")
            if (
                decision
                and (kinds is None or decision in kinds)
                and stack in commit.trailer_values("Rollout-Stack")
            ):
                return commit
        return None

    def status(self, stacks: Sequence[str], live: LiveState | None = None) -> list[StackStatus]:
        live = live or NoLiveState()
        try:
            self.repo.fetch()
            ref = self.main_ref
        except UserError:
            ref = "HEAD"  # offline: report what this clone knows
        if self.repo.sha(ref) is None:
            ref = "HEAD"
        found = []
        pending = self.pending.all()
        for stack in stacks:
            _, state = self._state_at(ref, stack)
            changes = self.repo.trailers(ref, self.path(stack), limit=1)
            decision = self.last_decision(stack, ref)
            branches = tuple(sorted(self.repo.remote_branches(f"rollout/{stack}/")))
            weights, why = read_live(live, stack)
            if weights is None:
                drift = "unknown"
            else:
                drift = "in-sync" if dict(weights) == dict(state.weights) else "drift"
            found.append(
                StackStatus(
                    stack=stack,
                    state=state,
                    commit=changes[0].sha if changes else None,
                    last_decision=decision.trailer("Rollout-Decision") if decision else None,
                    last_decision_commit=decision.sha if decision else None,
                    last_decision_at=decision.committed_at if decision else None,
                    last_decision_by=decision.trailer("Rollout-Actor") if decision else None,
                    pending=branches,
                    live={c.value: w for c, w in weights.items()} if weights is not None else None,
                    drift=drift,
                    pending_apply=(pending[stack].commit or "main") if stack in pending else None,
                    live_unknown_why=why if weights is None else None,
                )
            )
        return found


# What a lifecycle verb reports when it committed (the outcome's one-word result, and its message).
_LIFECYCLE_DONE = {"release-start": "started", "release-finalize": "finalized", "retry": "retried"}


def _described(state: RolloutState) -> str:
    """Where a stack is, for a commit body: stage, step, the candidate's share over stable."""
    released = " (released)" if state.released else ""
    return (
        f"{state.stage} step {state.step}, {state.candidate.version} ({state.candidate.colour.value}) "
        f"at {state.candidate_weight}% over {state.stable.version}{released}"
    )


def _weights_text(state: RolloutState) -> str:
    return ",".join(f"{colour.value}={weight}" for colour, weight in sorted(state.weights.items()))


def _replace(outcome: PromotionOutcome, **changes: object) -> PromotionOutcome:
    from dataclasses import replace

    return replace(outcome, **changes)  # type: ignore[arg-type]
