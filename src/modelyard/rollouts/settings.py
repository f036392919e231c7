"""The feedback scale clients rate answers on."""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.options import Section, SettingsError, option
from modelyard.rollouts.feedback import FeedbackScale


@dataclass(frozen=True)
class RolloutSettings(Section):
    feedback_min: float = option(
        1.0, flag="--feedback-min", help="Lowest numeric score POST /v1/feedback accepts (thumbs down counts as it)."
    )
    feedback_max: float = option(
        5.0, flag="--feedback-max", help="Highest numeric score POST /v1/feedback accepts (thumbs up counts as it)."
    )

    def check(self) -> None:
        if not self.feedback_min < self.feedback_max:
            raise SettingsError(
                f"--feedback-min ({self.feedback_min:g}) must be below --feedback-max ({self.feedback_max:g})"
            )

    @property
    def feedback_scale(self) -> FeedbackScale:
        return FeedbackScale(self.feedback_min, self.feedback_max)
