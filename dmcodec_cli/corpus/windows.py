"""The corpus application's names for the inference engine's windows (``dmcodec_cli.engine.windows``)."""

from ..engine.windows import Piece, WindowPlan, budget_groups, plan_pieces, stitch, stream_pieces

__all__ = ["Piece", "WindowPlan", "budget_groups", "plan_pieces", "stitch", "stream_pieces"]
