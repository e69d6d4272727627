"""The duty desk's reading of the incidents: the read model's incidents as the plain facts the
handover and the duty log take (playbooks/duty/handover.py OpenIncident, log.py IncidentEntry)."""

from __future__ import annotations

from collections.abc import Iterable

from playbooks.duty.handover import ItemNotice, ItemObligation, OpenIncident
from playbooks.duty.log import INCIDENT_KINDS, IncidentEntry, involves
from services.view import IncidentView


def open_incidents(view: IncidentView) -> list[OpenIncident]:
    """Every decided incident not yet ended, live or drill (open_items leaves drills out)."""
    out = []
    for inc in view.incidents.values():
        if inc.decided is None or inc.ended:
            continue
        d = inc.decided.decision
        status = {kind: ob.status for kind, ob in inc.fold.obligations.items()}
        obligations = tuple(ItemObligation(key=o.kind.value, label=o.label, owner_id=o.owner_id, due_at=o.due_at,
                                           status=status.get(o.kind.value, "open")) for o in d.obligations)
        # acknowledgement (已阅) arrives with delivery (issue 19): until then no notice is acknowledged
        notices = tuple(ItemNotice(dedup_key=n.dedup_key, unit_id=n.unit_id, kind=n.kind, requested_at=n.requested_at,
                                   acknowledged=False) for n in inc.notifications.values())
        out.append(OpenIncident(incident_id=inc.incident_id, type_name=d.type_name,
                                level=inc.fold.level or d.response_level.value, lead_unit_ids=tuple(d.lead_unit_ids),
                                obligations=obligations, notices=notices, drill=inc.decided.drill))
    return out


def incident_entries(view: IncidentView, unit_id: str) -> Iterable[IncidentEntry]:
    """The unit's incident lines: of incidents it leads, owns an obligation of, or was told of; live only."""
    for inc in view.incidents.values():
        if inc.decided is None or inc.decided.drill:
            continue
        d = inc.decided.decision
        if not involves(unit_id, lead_unit_ids=d.lead_unit_ids, owner_ids=(o.owner_id for o in d.obligations),
                        told_unit_ids=(n.unit_id for n in inc.notifications.values())):
            continue
        for e in inc.events.values():
            kind = INCIDENT_KINDS.get(e.kind)
            if kind is not None:
                yield IncidentEntry(at=e.at, incident_id=inc.incident_id, kind=kind,
                                    text=f"{d.type_name}：{e.reason}", unit_id=unit_id)
