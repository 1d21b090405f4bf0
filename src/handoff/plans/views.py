"""Derived views of a plan: progress and the summaries sessions show. Pure."""

from __future__ import annotations

from handoff.plans.models import Plan, TaskStatus
from handoff.plans.schemas import PlanRead
from handoff.sessions.schemas import PlanProgress, PlanSummary, PlanWithProgress


def progress(plan: Plan) -> PlanProgress:
    """Completed tasks over all tasks, as an integer percentage (0 with no tasks)."""
    total = sum(len(phase.tasks) for phase in plan.phases)
    done = sum(1 for phase in plan.phases for task in phase.tasks if task.status is TaskStatus.COMPLETED)
    return PlanProgress(total_tasks=total, completed_tasks=done, percentage=(done * 100 // total) if total else 0)


def plan_read(plan: Plan) -> PlanRead:
    return PlanRead.model_validate({**plan.model_dump(), "progress": progress(plan)})


def plan_summary(plan: Plan) -> PlanSummary:
    return PlanSummary(slug=plan.slug, title=plan.title, current_phase=plan.current_phase)


def plan_with_progress(plan: Plan) -> PlanWithProgress:
    return PlanWithProgress(slug=plan.slug, title=plan.title, current_phase=plan.current_phase, progress=progress(plan))
