"""Episode selection: reading ordered candidates only until the page is full changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from detection.events import Episode
from storage.base import EpisodeQuery
from storage.queries import select_episodes
from tests.storage.conftest import NIGHT_START_US, SECOND_US, episode

T0 = NIGHT_START_US

candidate = st.builds(
    lambda device, onset_s, duration_s, peak, site: episode(
        device, T0 + onset_s * SECOND_US, duration_s, peak=peak, site=site
    ),
    st.sampled_from(["dev-a", "dev-b", "dev-c"]),
    st.integers(-7200, 7200),  # onsets around the query, before it included (look-back)
    st.one_of(st.none(), st.floats(1, 600)),  # None: still open
    st.floats(1, 40),
    st.sampled_from(["calf", "left_calf"]),
)


@settings(max_examples=300, deadline=None)
@given(
    episodes=st.lists(candidate, max_size=60, unique_by=lambda e: e.episode_id),
    devices=st.lists(st.sampled_from(["dev-a", "dev-b", "dev-c"]), min_size=1, unique=True),
    min_duration_s=st.sampled_from([0.0, 30.0]),
    min_peak=st.sampled_from([0.0, 10.0]),
    site=st.sampled_from([None, "calf"]),
    include_open=st.booleans(),
    cursor_at=st.one_of(st.none(), st.integers(0, 59)),
    limit=st.one_of(st.none(), st.integers(1, 20)),
    data=st.data(),
)
def test_ordered_candidates_stopped_at_a_full_page_give_the_same_page(
    episodes: list[Episode],
    devices: list[str],
    min_duration_s: float,
    min_peak: float,
    site: str | None,
    include_open: bool,
    cursor_at: int | None,
    limit: int | None,
    data: st.DataObject,
) -> None:
    ordered = sorted(episodes, key=lambda e: (e.onset_us, e.episode_id))
    cursor = None
    if cursor_at is not None and ordered:
        pick = ordered[cursor_at % len(ordered)]
        cursor = (pick.onset_us, pick.episode_id)
    query = EpisodeQuery(
        tuple(devices),
        T0,
        T0 + 3600 * SECOND_US,
        min_duration_s=min_duration_s,
        min_peak_intensity=min_peak,
        site=site,
        include_open=include_open,
        after_episode=cursor,
        limit=limit,
    )
    shuffled = data.draw(st.permutations(episodes))
    built: list[Episode] = []

    def lazily() -> Iterator[Episode]:
        for e in ordered:
            built.append(e)
            yield e

    page = select_episodes(lazily(), query, ordered=True)
    assert page == select_episodes(shuffled, query)
    if limit is not None and len(page) == limit and page:
        last = ordered.index(page[-1])
        assert len(built) == last + 1  # nothing read past the page's last episode
