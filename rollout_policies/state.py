"""A stack's rollout state: which stage and step it is at, the versions, the traffic weights.

It lives in the stack's ``Pulumi.<stack>.yaml`` under the key ``markethub-rollout:rollout``. The
Pulumi program reads nothing else to decide traffic; only the tool (or a person, in a PR) writes it.

    markethub-rollout:rollout:
      stage: limited          # a stage id of the plan
      step: 0                 # index into the stage's traffic steps
      stable:    {colour: blue,  version: 4.12.0}
      candidate: {colour: green, version: 5.0.0}
      weights:   {blue: 98, green: 2}
      stageStartedAt: "2026-11-20T09:00:00Z"
      stepStartedAt:  "2026-11-20T09:00:00Z"
      rolledBack: true        # only after a rollback: no user reaches the candidate (see below)
      paused: true            # only while paused (`rollout pause`): promotions hold, traffic stays
      released: true          # only once finalized (`rollout release finalize`): the release is done

``rolledBack`` is what takes every user off the candidate in every stage: the weights alone cannot
say it, because a beta stack has 0% candidate weight while its cohort route sends the beta users to
the candidate. A rolled-back stack has no cohort route and serves the plan's stable feature flags;
the next promotion (a resume) clears it.

``released`` says a person finalized the release at the last step of the last stage with 100% on the
candidate: the candidate is what every user runs, and `rollout release start` may begin the next one
(the candidate becomes the stable colour). A rollback clears it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

CONFIG_KEY = "markethub-rollout:rollout"


class Colour(StrEnum):
    BLUE = "blue"
    GREEN = "green"

    @property
    def other(self) -> Colour:
        return Colour.GREEN if self is Colour.BLUE else Colour.BLUE


class Release(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    colour: Colour
    version: str = Field(min_length=1)


class RolloutState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    stage: str
    step: int = Field(ge=0)
    stable: Release
    candidate: Release
    weights: dict[Colour, int]
    stage_started_at: datetime = Field(alias="stageStartedAt")
    step_started_at: datetime = Field(alias="stepStartedAt")
    rolled_back: bool = Field(default=False, alias="rolledBack")
    # A person paused the rollout: the scheduled promotion holds (reason "paused") until a resume.
    # Traffic is not touched, and a rollback still happens when one is needed.
    paused: bool = False
    # The release is finished (`rollout release finalize`): the candidate serves 100% at the last step.
    released: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> RolloutState:
        if self.stable.colour == self.candidate.colour:
            raise ValueError("stable and candidate must be different colours")
        if set(self.weights) != {Colour.BLUE, Colour.GREEN}:
            raise ValueError("weights must name blue and green")
        if any(w < 0 or w > 100 for w in self.weights.values()):
            raise ValueError("weights must be between 0 and 100")
        if sum(self.weights.values()) != 100:
            raise ValueError(f"weights must sum to 100, not {sum(self.weights.values())}")
        if self.rolled_back and self.candidate_weight != 0:
            raise ValueError(
                f"rolledBack is true but the candidate has {self.candidate_weight}%"
                " (a rolled-back stack has 0)"
            )
        if self.released and self.candidate_weight != 100:
            raise ValueError(
                f"released is true but the candidate has {self.candidate_weight}%"
                " (a released stack has 100)"
            )
        if self.released and self.rolled_back:
            raise ValueError("released and rolledBack cannot both be true")
        for name in ("stage_started_at", "step_started_at"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"{name} needs a time zone (write it as ...Z)")
        return self

    @property
    def candidate_weight(self) -> int:
        return self.weights[self.candidate.colour]

    @property
    def cohort_on(self) -> bool:
        """Whether the beta cohort route sends its users to the candidate (not after a rollback)."""
        return not self.rolled_back

    def to_config(self) -> dict[str, Any]:
        """The plain mapping written to the stack config (camelCase keys, ISO times).

        ``rolledBack``, ``paused`` and ``released`` are written only when true, so a stack that was
        never rolled back, paused or finalized keeps the block it always had (``render_state`` turns
        an existing ``true`` to false).
        """
        config: dict[str, Any] = {
            "stage": self.stage,
            "step": self.step,
            "stable": {"colour": self.stable.colour.value, "version": self.stable.version},
            "candidate": {"colour": self.candidate.colour.value, "version": self.candidate.version},
            "weights": {c.value: self.weights[c] for c in (Colour.BLUE, Colour.GREEN)},
            "stageStartedAt": _iso(self.stage_started_at),
            "stepStartedAt": _iso(self.step_started_at),
        }
        if self.rolled_back:
            config["rolledBack"] = True
        if self.paused:
            config["paused"] = True
        if self.released:
            config["released"] = True
        return config


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
