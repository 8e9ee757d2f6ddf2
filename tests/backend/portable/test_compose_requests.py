"""The ``compose`` request on the wire: what the add-on builds arrives typed, and every bad timeline is
refused by name with its fix before any work (docs/protocol.md, compose)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.portable import messages as m
from backend.portable import protocol as p


def parse(message: dict) -> m.Request:
    return m.parse_request(p.decode_message(p.encode_message({"id": 3, "type": "compose", **message}),
                                            kind="request"))


def test_a_timeline_request_round_trips() -> None:
    request = m.ComposeRequest(
        segments=(m.Segment(prompt="a person walks to the door", seconds=6.0),
                  m.Segment(prompt="the person knocks", seconds=2.5, seed=9),
                  m.Segment(prompt="the person waits")),
        transition=0.6, seed=11, fps=24.0, loop=True, sampling=m.SamplingOptions(steps=4))
    back = m.parse_request(p.decode_message(p.encode_message(request.to_message(3)), kind="request"))
    assert back == m.dataclasses.replace(request, id=3)


def test_continue_and_regenerate_round_trip() -> None:
    source = m.JointsSource(data=np.zeros((30, 22, 3), dtype=np.float32), fps=24.0)
    request = m.ComposeRequest(segments=(m.Segment(prompt="a person sits", seconds=3.0),),
                               continue_from=source, direction="before")
    back = m.parse_request(p.decode_message(p.encode_message(request.to_message(3)), kind="request"))
    assert isinstance(back, m.ComposeRequest) and back.direction == "before"
    assert isinstance(back.continue_from, m.JointsSource) and back.continue_from.data.shape == (30, 22, 3)
    segments = (m.Segment(prompt="a", seconds=2.0), m.Segment(prompt="b", seconds=3.0))
    regenerate = m.RegenerateSpec(codes=np.zeros((26, 6), dtype=np.int64), segments=segments, index=1)
    request = m.ComposeRequest(segments=(segments[0], m.Segment(prompt="c", seconds=3.0)),
                               regenerate=regenerate)
    back = m.parse_request(p.decode_message(p.encode_message(request.to_message(3)), kind="request"))
    assert back.regenerate.index == 1 and back.regenerate.codes.shape == (26, 6)
    assert back.regenerate.segments == segments


@pytest.mark.parametrize("message, words", [
    ({}, "has no segment"),
    ({"segments": []}, "has no segment"),
    ({"segments": [{"prompt": "  ", "seconds": 2}]}, "Segment 1's 'segments[0].prompt' is empty"),
    ({"segments": [{"seconds": 2}]}, "Segment 1 has no"),
    ({"segments": [{"prompt": "a", "seconds": 0}]}, "'segments[0].seconds'=0 is outside"),
    ({"segments": [{"prompt": "a", "seconds": -1}]}, "outside"),
    ({"segments": [{"prompt": "a", "seconds": 2}, {"prompt": "b", "seconds": 299}]},
     "lasts 301 s, more than the maximum of 300 s"),
    ({"segments": [{"prompt": "a", "seconds": 2}], "transition": 5}, "'transition'=5 is outside"),
    ({"segments": [{"prompt": "a", "seconds": 2}], "direction": "sideways"}, "not one of after, before"),
    ({"segments": [{"prompt": "a", "seconds": 2}], "loop": True,
      "continue_from": {"kind": "features", "data": [[0.0] * 263] * 8}}, "cannot be a 'loop'"),
    ({"segments": [{"prompt": "a", "seconds": 2}],
      "regenerate": {"codes": [[0] * 6] * 10, "segments": [{"prompt": "a", "seconds": 2}], "index": 1}},
     "'regenerate.index'=1 names no segment: the take has 1 segments"),
    ({"segments": [{"prompt": "a", "seconds": 2}],
      "regenerate": {"codes": [[0] * 6] * 10, "segments": [{"prompt": "a", "seconds": 3}], "index": 0}},
     "do not have the durations"),
    ({"segments": [{"prompt": "a", "seconds": 2}],
      "regenerate": {"segments": [{"prompt": "a", "seconds": 2}], "index": 0}}, "needs 'regenerate.codes'"),
])
def test_bad_timelines_are_refused_with_a_fix(message, words) -> None:
    with pytest.raises(p.ProtocolError, match=m.re.escape(words)) as caught:
        parse(message)
    assert caught.value.code == p.BAD_INPUT and caught.value.fix


def test_the_nan_seconds_of_a_segment_are_refused_by_name() -> None:
    with pytest.raises(p.ProtocolError, match=r"'segments\[1\]\.seconds' must be a finite number"):
        segments = [{"prompt": "a", "seconds": 1}, {"prompt": "b", "seconds": float("nan")}]
        m.parse_request({"id": 3, "type": "compose", "segments": segments})


def test_a_segment_the_transitions_would_swallow_is_refused_with_its_minimum():
    # [walk 3 s, jumps 0.4 s, walk 3 s] with 0.4 s transitions (2 tokens): the jump's two tokens all
    # belong to the transitions, so its prompt would never be used.
    problem, fix = m.segment_length_problem([3.0, 0.4, 3.0], 0.4, False, 20.0)
    assert "Segment 2 lasts 0.4 s (2 tokens" in problem and "0.8 s (4 tokens)" in problem
    assert "at least 0.8 s" in fix and "shorten the transition" in fix
    assert m.segment_length_problem([3.0, 0.8, 3.0], 0.4, False, 20.0) is None
    # The first and last of an open timeline give one transition half each: 1 + 2 tokens.
    assert m.segment_length_problem([0.6, 3.0, 0.6], 0.4, False, 20.0) is None
    assert "Segment 1 lasts 0.4 s" in m.segment_length_problem([0.4, 3.0], 0.4, False, 20.0)[0]
    # Every segment of a loop lies between two transitions; a single open segment has none.
    assert "Segment 1 lasts 0.6 s" in m.segment_length_problem([0.6, 3.0], 0.4, True, 20.0)[0]
    assert m.segment_length_problem([0.2], 0.4, False, 20.0) is None


def test_a_float32_transition_is_the_tokens_the_user_typed():
    # The add-on's FloatProperty sends 0.4 as 0.4000000059604645: still 2 tokens, not 3.
    assert m.transition_token_count(0.4000000059604645, 20.0) == 2
    assert m.transition_token_count(0.41, 20.0) == 3
