import numpy as np
import pytest

from datasets.schema import (
    EVENT_TYPES,
    MISSING_ID,
    EventTable,
    EventType,
    SchemaError,
    map_event_types,
    session_offsets,
)


def table(**overrides) -> EventTable:
    cols = dict(
        session_id=[2, 1, 1, 2],
        user_id=[7, 5, 5, 7],
        timestamp=[10.0, 5.0, 3.0, 4.0],
        event_type=[0, 6, 0, 3],
        item_id=[11, 12, 12, MISSING_ID],
        category_id=[1, 2, 2, 1],
        price=[1.5, np.nan, 2.0, 3.0],
    )
    cols.update(overrides)
    return EventTable(**cols)


def test_vocabulary_is_fixed_and_documented():
    assert EVENT_TYPES == (
        "view",
        "search",
        "click",
        "add_to_cart",
        "remove_from_cart",
        "favourite",
        "purchase",
        "review",
    )
    assert EVENT_TYPES.index("purchase") == EventType.PURCHASE


def test_dataset_spellings_map_onto_the_vocabulary():
    raw = ["pv", "buy", "cart", "fav", "addtocart", "transaction", "clicks", "orders", "VIEW"]
    got = [EVENT_TYPES[c] for c in map_event_types(raw)]
    assert got == [
        "view",
        "purchase",
        "add_to_cart",
        "favourite",
        "add_to_cart",
        "purchase",
        "click",
        "purchase",
        "view",
    ]


def test_unknown_types_rejected_dropped_or_mapped_by_rule():
    with pytest.raises(SchemaError, match="unknown event types \\['share'\\]"):
        map_event_types(["view", "share"])
    assert map_event_types(["view", "share"], on_unknown="drop").tolist() == [0, -1]
    assert map_event_types(["share"], on_unknown="click").tolist() == [EventType.CLICK]
    assert map_event_types(["share"], aliases={"share": "favourite"}).tolist() == [5]
    with pytest.raises(SchemaError, match="not a rule"):
        map_event_types(["share"], on_unknown="explode")


def test_columns_are_coerced_to_schema_dtypes():
    t = table()
    assert t.timestamp.dtype == np.float64
    assert t.event_type.dtype == np.int8
    assert t.item_id.dtype == np.int64
    assert t.price.dtype == np.float32
    assert t.device is None


def test_category_ids_with_19_digits_survive_exactly():
    big = 2103807459595387724
    t = table(category_id=[big, big, 1, 1])
    assert int(t.category_id[0]) == big


def test_unequal_columns_are_rejected():
    with pytest.raises(SchemaError, match="differ in length"):
        table(price=[1.0])


def test_sorted_orders_by_session_then_time_without_mutating():
    t = table()
    s = t.sorted()
    assert s.session_id.tolist() == [1, 1, 2, 2]
    assert s.timestamp.tolist() == [3.0, 5.0, 4.0, 10.0]
    assert t.session_id.tolist() == [2, 1, 1, 2]
    assert session_offsets(s.session_id).tolist() == [0, 2, 4]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"timestamp": [1.0, np.nan, 2.0, 3.0]}, "finite"),
        ({"event_type": [0, 9, 0, 0]}, "event_type values"),
        (
            {
                "session_id": [],
                "user_id": [],
                "timestamp": [],
                "event_type": [],
                "item_id": [],
                "category_id": [],
                "price": [],
            },
            "no events",
        ),
    ],
)
def test_validate_names_the_broken_rule(overrides, message):
    with pytest.raises(SchemaError, match=message):
        table(**overrides).validate()
