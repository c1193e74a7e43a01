import json

from hypothesis import given, settings, strategies as st

from mape.core.jsonout import dumps

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    st.text())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(values)
def test_same_text_as_json_dumps(value):
    assert dumps(value) == json.dumps(value, ensure_ascii=False)


def test_a_real_mapping_document():
    from mape.core.mapping import calc
    from mape.core.rules import load_table

    d = calc("2404:7a82:4d02:4100::/60", load_table()).as_dict()
    assert dumps(d) == json.dumps(d, ensure_ascii=False)
    assert json.loads(dumps(d)) == d
