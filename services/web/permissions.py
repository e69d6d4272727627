"""Who may do what: one table of permissions by role. services.web.auth enforces it on every route;
the pages read it to show only what a user may use."""

from __future__ import annotations

from topics.models import Role, UserRecord

ALL = frozenset(Role)
PERMISSIONS: dict[str, frozenset[Role]] = {
    "incident.raise": frozenset({Role.DUTY_OFFICER}),
    "incident.file": frozenset({Role.DUTY_OFFICER}),
    "incident.approve": frozenset({Role.COMMANDER}),
    "incident.end": frozenset({Role.COMMANDER}),
    "incident.read": ALL,
    "incident.private": frozenset({Role.DUTY_OFFICER, Role.COMMANDER}),  # reporter's name and phone
    "drill.run": frozenset({Role.DRILL_CONTROLLER}),
    "users.manage": frozenset({Role.ADMIN}),
    "metrics.read": ALL,
    # duty (issue 18): who is on duty is shown to all (the command center's screen); their mobile and
    # email to those who call them; rosters changed by the office (admin) and the commanders
    "duty.read": ALL,
    "duty.contacts": frozenset({Role.DUTY_OFFICER, Role.COMMANDER, Role.ADMIN}),
    "duty.manage": frozenset({Role.COMMANDER, Role.ADMIN}),
    "duty.handover": frozenset({Role.DUTY_OFFICER, Role.COMMANDER}),
    # 已阅 (issue 19) for a notice, signed in: those who answer for a unit's duty; the ack link needs no sign-in
    "notices.ack": frozenset({Role.DUTY_OFFICER, Role.COMMANDER, Role.ADMIN}),
    # warnings (issue 20): drafted, issued and lifted by the issuing units' duty staff; approved and
    # adjusted by the commanders (区领导, 区应急委); users are not linked to units: each command names its unit
    "warning.read": ALL,
    "warning.issue": frozenset({Role.DUTY_OFFICER, Role.COMMANDER, Role.ADMIN}),
    "warning.approve": frozenset({Role.COMMANDER, Role.ADMIN}),
    # the 迟报/漏报/瞒报 ledger (issue 23, 5.5): read by the command center's screen, the plan office (admin),
    # the commanders and the duty officers; a drill run's own ledger by its controllers too; the 通报 issued by
    # the commanders and the office; a unit's 整改 reported by those who answer for a unit (duty staff)
    # what-if of a plan revision (issue 24, 7.1.5): the office that keeps the plan (admin) and the commanders;
    # it reads every live incident of the period
    "plan.whatif": frozenset({Role.COMMANDER, Role.ADMIN}),
    "ledger.read": frozenset({Role.DUTY_OFFICER, Role.COMMANDER, Role.VIEWER, Role.ADMIN}),
    "ledger.drill": frozenset({Role.DUTY_OFFICER, Role.COMMANDER, Role.VIEWER, Role.ADMIN, Role.DRILL_CONTROLLER}),
    "ledger.issue": frozenset({Role.COMMANDER, Role.ADMIN}),
    "ledger.rectify": frozenset({Role.DUTY_OFFICER, Role.COMMANDER, Role.ADMIN}),
    # the plan in force and its adoptions (issue 24 item 3): read by all; adopted and rolled back (the what-if
    # page, POST /plan/adoptions and /plan/rollbacks) by the office that keeps the plan (admin) alone: 区应急办
    # revises the general plan (8.2.1); the commanders ask the what-if and argue for a revision, the office adopts it
    "plan.read": ALL,
    "plan.adopt": frozenset({Role.ADMIN}),
}


def can(user: UserRecord, permission: str) -> bool:
    return user.role in PERMISSIONS[permission]
