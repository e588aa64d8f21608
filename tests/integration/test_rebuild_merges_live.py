"""``hub rebuild`` after merges on the real stack: the rebuild must replay a merge after the retired citizen's
earlier events even when they sit on a partition the replay reads more slowly.

Why it matters: after a merge, an event for the survivor that carries the retired citizen's MRN is attributed
to the retired citizen's part by that MRN (hub.record.merge.attribute), so an unmerge hands it back. Live, the
retired citizen's events were applied long before the merge (the MPI merges citizens it has seen). A replay that
reads partitions at their own pace can apply the merge first, while the retired part is still empty: the event
then stays with the survivor, and after the unmerge both records differ from the live ones. This is what made
test_identity_mpi_live's accepted-then-unmerged pair (Lê Văn Tâm, Phạm Văn Hùng) differ in the whole suite's
rebuild, where every partition holds thousands of events and is read at its own pace.
"""

from __future__ import annotations

import orjson
import pytest

from hub.envelope import mrn_system
from hub.identity.events import merged_event, unmerged_event
from hub.partition import murmur2
from hub.settings import Settings
from tests.conftest import hub_cli
from tests.integration.test_record_live import citizen, produce, records, settled
from tests.unit.test_record_merge import CHO_RAY, patient

pytestmark = pytest.mark.integration
FILLERS = 4000  # events ahead of the retired citizen's on its partition: several fetches of the replay


def partition_of(citizen_id: str, partitions: int) -> int:
    return (murmur2(citizen_id.encode()) & 0x7FFFFFFF) % partitions


async def test_rebuild_after_a_merge_unmerge_matches_live_when_the_retired_partition_is_read_later(
        hub_stack: Settings) -> None:
    n = hub_stack.topic_partitions
    tam, hung = citizen("tam"), citizen("hung")
    while partition_of(hung, n) == partition_of(tam, n):
        hung = citizen("hung")
    cccd = f"079070{int(tam.split('-')[2], 16) % 1_000_000:06d}"  # one CCCD claimed by both (a clerk's mistyping)
    fillers = []
    while len(fillers) < FILLERS:  # other citizens whose events land on Hùng's partition, ahead of his
        other = citizen("lan")
        if partition_of(other, n) == partition_of(hung, n):
            fillers.append(patient(other, f"{other}-p1", "2026-01-02T08:00:00+07:00", "Trần", "Thị Lan",
                                   phone="0911000222", mrn=("79048", other[-16:]), cccd="079190000001"))
    hung_mrn, tam_mrn = ("79002", f"Y-{hung[-12:]}"), CHO_RAY
    await produce(hub_stack, fillers + [
        patient(hung, f"{hung}-p1", "2026-01-05T08:00:00+07:00", "Phạm", "Văn Hùng", phone="0903111222",
                mrn=hung_mrn, cccd=cccd),
        patient(tam, f"{tam}-p1", "2026-01-04T08:00:00+07:00", "Lê", "Văn Tâm", phone="0988777666",
                mrn=tam_mrn, cccd=cccd)])
    await settled(hub_stack)
    # A steward accepts the pair; Hùng's hospital sends him again, which the MPI now resolves to the survivor.
    merge = merged_event(tam, hung, f"{tam}-review", "2026-03-01T08:00:00+07:00", "2026-03-01T08:00:00+07:00")
    again = patient(tam, f"{hung}-p2", "2026-03-02T08:00:00+07:00", "Phạm", "Văn Hùng", phone="0977555444",
                    mrn=hung_mrn, cccd=cccd)
    await produce(hub_stack, [merge, again])
    await settled(hub_stack)
    # The steward finds them two people after all: Hùng's update goes back to Hùng (his MRN's part).
    await produce(hub_stack, [unmerged_event(tam, hung, f"{tam}-unmerge", "2026-03-03T08:00:00+07:00",
                                             "2026-03-03T08:00:00+07:00")])
    await settled(hub_stack)
    live = await records(hub_stack, [tam, hung])
    assert live[hung]["demographics"]["telecom"] == [{"system": "phone", "value": "0977555444"}]
    assert live[tam]["demographics"]["name"]["family"] == "Lê"
    assert {"system": mrn_system(hung_mrn[0]), "value": hung_mrn[1]} not in live[tam]["identifiers"]

    compared = hub_cli("rebuild", "--compare", "--json", check=False)
    result = orjson.loads(compared.stdout)
    ours = {tam, hung}
    assert not ours & set(result["differ"] + result["only_live"] + result["only_rebuilt"]), result
