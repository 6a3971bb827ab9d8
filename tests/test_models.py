"""SchemaGuardian: every model accepts what its contract allows and refuses the rest, naming the field.

Covers the field types (exact money, UTC-aware timestamps, identifiers), each hot document's cross-field
rules, the work item's decoding on the subscriber side, and the warehouse rows' own rules. Each rejection
is checked for *where* it points (the ``loc`` a person reads in the dead letter), not only that it fails.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from goldthread.errors import MalformedMessageError, RecordValidationError
from goldthread.models import (
    ALL_TABLES,
    DeadLetter,
    FactTrade,
    JobMetadata,
    LivePosition,
    LiveSignal,
    Loop,
    RejectedSignal,
    RunStatus,
    SchemaGuardian,
    SnapshotAccount,
    Strategy,
    WarehouseRow,
    WorkItem,
    row_id_for,
)
from goldthread.models.broker import BrokerOrder, OptionPosition
from goldthread.models.work_items import errors_of
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

UTC = dt.UTC
T = dt.datetime(2024, 3, 5, 15, 0, tzinfo=UTC)


def locs(model: type[BaseModel], data: dict[str, Any]) -> set[str]:
    """The ``loc`` of every error SchemaGuardian reports for ``data`` (which must be invalid)."""
    with pytest.raises(RecordValidationError) as info:
        SchemaGuardian.validate(model, data, "rec-1")
    return {e["loc"] for e in info.value.errors}


def messages(model: type[BaseModel], data: dict[str, Any]) -> str:
    with pytest.raises(RecordValidationError) as info:
        SchemaGuardian.validate(model, data, "rec-1")
    return str(info.value)


# -- documents -----------------------------------------------------------------------------------


def signal(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "signal_id": "sig-1", "strategy_id": "momo", "strategy_version": "1.0", "symbol": "AAPL",
        "asset_class": "equity", "side": "long", "signal_price": "100", "take_profit": "105",
        "stop_loss": "97", "created_at": T.isoformat(), "expires_at": (T + dt.timedelta(hours=4)).isoformat(),
        "status": "ACTIVE",
    }
    data.update(over)
    return data


def rejected(**over: Any) -> dict[str, Any]:
    return signal(**{"status": "REJECTED", "rejection_reason": "MAX_EXPOSURE", "rejected_at": T.isoformat(), **over})


def position(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "position_id": "pos-1", "signal_id": "sig-1", "strategy_id": "momo", "strategy_version": "1.0",
        "symbol": "AAPL", "asset_class": "equity", "side": "long", "qty": "3", "entry_order_id": "o-1",
        "exit_order_id": "o-2", "entry_filled_avg_price": "100.5", "exit_filled_avg_price": "104",
        "opened_at": T.isoformat(), "closed_at": (T + dt.timedelta(hours=2)).isoformat(), "status": "CLOSED",
        "est_fee_usd": "0.5",
    }
    data.update(over)
    return data


def fact_trade(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "row_id": "r1", "ds": "2024-03-05", "run_id": "trades-1", "loaded_at": T.isoformat(),
        "position_id": "pos-1", "signal_id": "sig-1", "strategy_id": "momo", "strategy_version": "1.0",
        "symbol": "AAPL", "asset_class": "equity", "side": "long", "qty": "3", "entry_order_id": "o-1",
        "exit_order_id": "o-2", "opened_at": T.isoformat(), "closed_at": (T + dt.timedelta(hours=1)).isoformat(),
        "holding_seconds": 3600, "est_fee_usd": "0.5",
    }
    data.update(over)
    return data


class TestFieldTypes:
    def test_valid_signal_is_accepted_with_exact_decimals(self) -> None:
        s = SchemaGuardian.validate(LiveSignal, signal(), "sig-1")
        assert s.signal_price == Decimal("100") and isinstance(s.signal_price, Decimal)
        assert s.initial_risk == Decimal("3")

    def test_float_is_read_through_its_repr(self) -> None:
        s = SchemaGuardian.validate(LiveSignal, signal(signal_price=185.12, take_profit=190.1, stop_loss=180.07), "s")
        assert s.signal_price == Decimal("185.12")  # Decimal(185.12) would be 185.1199999999999903...
        assert s.take_profit == Decimal("190.1")
        assert s.stop_loss == Decimal("180.07")

    def test_float_with_more_than_nine_places_is_rounded_half_even(self) -> None:
        s = SchemaGuardian.validate(LivePosition, position(qty=0.1234567895), "p")
        assert s.qty == Decimal("0.123456790")  # 9th place 9 then 5 -> rounds to ...790 (nearest even 0)
        s = SchemaGuardian.validate(LivePosition, position(qty=0.1234567885), "p")
        assert s.qty == Decimal("0.123456788")  # tie goes to the even digit 8

    @pytest.mark.parametrize("value", ["0.1234567891", Decimal("1.0000000001")])
    def test_exact_value_with_more_than_nine_places_is_refused(self, value: object) -> None:
        assert locs(LivePosition, position(qty=value)) == {"qty"}

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "NaN", "Infinity", Decimal("NaN")])
    def test_non_finite_numbers_are_refused(self, value: object) -> None:
        assert locs(LivePosition, position(est_fee_usd=value)) == {"est_fee_usd"}

    @pytest.mark.parametrize("value", [True, False])
    def test_booleans_are_not_numbers(self, value: bool) -> None:
        with pytest.raises(RecordValidationError) as info:
            SchemaGuardian.validate(LivePosition, position(qty=value), "p")
        assert info.value.errors[0]["loc"] == "qty"
        assert "boolean" in info.value.errors[0]["msg"]

    def test_more_than_38_digits_is_refused(self) -> None:
        assert locs(LivePosition, position(est_fee_usd="1" * 30 + ".123456789")) == {"est_fee_usd"}
        SchemaGuardian.validate(LivePosition, position(est_fee_usd="1" * 29 + ".123456789"), "p")  # 38 digits

    @pytest.mark.parametrize("field", ["created_at", "expires_at"])
    def test_naive_timestamps_are_refused(self, field: str) -> None:
        naive = (T + dt.timedelta(hours=1)).replace(tzinfo=None).isoformat()
        assert locs(LiveSignal, signal(**{field: naive})) == {field}

    def test_naive_datetime_object_is_refused(self) -> None:
        assert locs(LivePosition, position(opened_at=dt.datetime(2024, 3, 5, 15))) == {"opened_at"}

    def test_offsets_are_normalised_to_utc(self) -> None:
        s = SchemaGuardian.validate(LiveSignal, signal(created_at="2024-03-05T10:00:00-05:00"), "s")
        assert s.created_at == T
        assert s.created_at.utcoffset() == dt.timedelta(0)
        assert s.created_at.hour == 15

    def test_z_suffix_is_utc(self) -> None:
        s = SchemaGuardian.validate(LiveSignal, signal(created_at="2024-03-05T15:00:00Z"), "s")
        assert s.created_at == T and s.created_at.tzinfo is not None

    @pytest.mark.parametrize(
        ("field", "value"),
        [("signal_id", ""), ("signal_id", "a/b"), ("signal_id", "x" * 129), ("symbol", "aapl"),
         ("symbol", "AAPL;DROP"), ("strategy_version", "1 0")],
    )
    def test_identifiers_and_symbols_are_restricted(self, field: str, value: str) -> None:
        assert locs(LiveSignal, signal(**{field: value})) == {field}

    def test_extra_fields_are_refused(self) -> None:
        assert locs(LiveSignal, signal(colour="red")) == {"colour"}
        assert locs(LivePosition, position(qty_typo="3")) == {"qty_typo"}

    def test_missing_field_is_named(self) -> None:
        data = signal()
        del data["symbol"]
        assert locs(LiveSignal, data) == {"symbol"}

    def test_error_names_record_and_field_but_not_the_input(self) -> None:
        with pytest.raises(RecordValidationError) as info:
            SchemaGuardian.validate(LiveSignal, signal(symbol="SECRET-TOKEN-123"), "sig-9")
        text = str(info.value) + json.dumps(info.value.errors)
        assert "'sig-9'" in str(info.value) and "LiveSignal" in str(info.value) and "symbol" in str(info.value)
        assert "SECRET-TOKEN-123" not in text
        assert info.value.reason_code == "VALIDATION"

    def test_non_mapping_record_is_refused(self) -> None:
        with pytest.raises(RecordValidationError) as info:
            SchemaGuardian.validate(LiveSignal, ["not", "a", "dict"], "sig-1")
        assert info.value.errors[0]["msg"] == "record is not an object"

    def test_models_are_frozen(self) -> None:
        s = SchemaGuardian.validate(LiveSignal, signal(), "s")
        with pytest.raises(ValidationError):
            s.symbol = "MSFT"  # type: ignore[misc]

    @given(st.decimals(min_value=Decimal("0.000000001"), max_value=Decimal("1e20"), places=9, allow_nan=False))
    def test_any_exact_nine_place_quantity_round_trips(self, qty: Decimal) -> None:
        p = LivePosition.model_validate(position(qty=str(qty)))
        assert p.qty == qty
        assert LivePosition.model_validate_json(p.model_dump_json()).qty == qty

    @given(st.floats(min_value=0.01, max_value=1e9, allow_nan=False, allow_infinity=False))
    def test_floats_keep_their_shortest_repr_when_it_fits(self, price: float) -> None:
        expected = Decimal(repr(price))
        p = LivePosition.model_validate(position(entry_filled_avg_price=price))
        assert p.entry_filled_avg_price is not None
        if expected.as_tuple().exponent >= -9:  # type: ignore[operator]
            assert p.entry_filled_avg_price == expected
        else:
            assert abs(p.entry_filled_avg_price - expected) <= Decimal("0.0000000005")


class TestLiveSignal:
    @pytest.mark.parametrize(
        ("side", "price", "tp", "sl"),
        [("long", "100", "105", "97"), ("short", "100", "95", "103")],
    )
    def test_barriers_on_the_correct_side_are_accepted(self, side: str, price: str, tp: str, sl: str) -> None:
        data = signal(side=side, signal_price=price, take_profit=tp, stop_loss=sl)
        s = SchemaGuardian.validate(LiveSignal, data, "s")
        assert s.side.value == side

    @pytest.mark.parametrize(
        ("side", "tp", "sl"),
        [
            ("long", "95", "97"),  # target below entry
            ("long", "105", "103"),  # stop above entry
            ("long", "100", "97"),  # target at entry
            ("long", "105", "100"),  # stop at entry
            ("short", "105", "103"),  # short target above entry
            ("short", "95", "97"),  # short stop below entry
            ("short", "95", "100"),  # short stop at entry
        ],
    )
    def test_barriers_on_the_wrong_side_are_refused(self, side: str, tp: str, sl: str) -> None:
        text = messages(LiveSignal, signal(side=side, take_profit=tp, stop_loss=sl))
        assert f"a {side} signal needs" in text

    def test_unknown_side_and_asset_class_are_refused(self) -> None:
        assert locs(LiveSignal, signal(side="flat")) == {"side"}
        assert locs(LiveSignal, signal(asset_class="bond")) == {"asset_class"}
        assert locs(LiveSignal, signal(status="PENDING")) == {"status"}

    @pytest.mark.parametrize("field", ["signal_price", "take_profit", "stop_loss"])
    def test_prices_must_be_positive(self, field: str) -> None:
        assert field in locs(LiveSignal, signal(**{field: "0"}))

    @pytest.mark.parametrize("delta", [dt.timedelta(0), dt.timedelta(seconds=-1)])
    def test_expiry_must_be_after_creation(self, delta: dt.timedelta) -> None:
        assert "expires_at must be after created_at" in messages(LiveSignal, signal(expires_at=(T + delta).isoformat()))

    def test_expiry_one_microsecond_after_creation_is_accepted(self) -> None:
        SchemaGuardian.validate(LiveSignal, signal(expires_at=(T + dt.timedelta(microseconds=1)).isoformat()), "s")

    def test_every_asset_class_and_status_is_accepted(self) -> None:
        for asset_class in ("crypto", "equity", "option"):
            for status in ("ACTIVE", "EXECUTED", "EXPIRED", "REJECTED"):
                SchemaGuardian.validate(LiveSignal, signal(asset_class=asset_class, status=status), "s")


class TestRejectedSignal:
    def test_valid_rejection(self) -> None:
        r = SchemaGuardian.validate(RejectedSignal, rejected(), "s")
        assert r.rejection_reason == "MAX_EXPOSURE"

    @pytest.mark.parametrize("status", ["ACTIVE", "EXECUTED", "EXPIRED"])
    def test_status_must_be_rejected(self, status: str) -> None:
        data = rejected()
        data["status"] = status
        assert "must have status REJECTED" in messages(RejectedSignal, data)

    def test_rejected_at_not_before_created_at(self) -> None:
        data = rejected()
        data["rejected_at"] = (T - dt.timedelta(seconds=1)).isoformat()
        assert "rejected_at must not be before created_at" in messages(RejectedSignal, data)
        data["rejected_at"] = T.isoformat()
        SchemaGuardian.validate(RejectedSignal, data, "s")

    def test_rejection_fields_are_required_and_barriers_still_apply(self) -> None:
        data = rejected()
        del data["rejection_reason"]
        assert locs(RejectedSignal, data) == {"rejection_reason"}
        assert "a long signal needs" in messages(RejectedSignal, rejected(take_profit="97", stop_loss="97"))
        assert locs(RejectedSignal, rejected(rejected_at="2024-03-05T16:00:00")) == {"rejected_at"}


class TestLivePosition:
    def test_valid_open_and_closed_positions(self) -> None:
        opened = SchemaGuardian.validate(
            LivePosition, position(status="OPEN", exit_order_id=None, exit_filled_avg_price=None, closed_at=None), "p"
        )
        assert opened.multiplier == Decimal(1) and opened.closed_at is None
        closed = SchemaGuardian.validate(LivePosition, position(), "p")
        assert closed.closed_at == T + dt.timedelta(hours=2)

    @pytest.mark.parametrize(("missing", "named"), [
        (("exit_order_id",), "exit_order_id"), (("closed_at",), "closed_at"),
        (("exit_order_id", "closed_at"), "exit_order_id, closed_at"),
    ])
    def test_closed_needs_exit_order_and_close_time(self, missing: tuple[str, ...], named: str) -> None:
        text = messages(LivePosition, position(**dict.fromkeys(missing)))
        assert f"a CLOSED position needs {named}" in text

    def test_closed_at_not_before_opened_at(self) -> None:
        early = (T - dt.timedelta(microseconds=1)).isoformat()
        assert "closed_at must not be before opened_at" in messages(LivePosition, position(closed_at=early))
        SchemaGuardian.validate(LivePosition, position(closed_at=T.isoformat()), "p")  # equal is allowed

    def test_open_position_must_not_have_closed_at(self) -> None:
        assert "an OPEN position must not have closed_at" in messages(LivePosition, position(status="OPEN"))

    @pytest.mark.parametrize("qty", ["0", "-5"])
    def test_qty_must_be_positive(self, qty: str) -> None:
        assert locs(LivePosition, position(qty=qty)) == {"qty"}

    def test_zero_fill_price_is_allowed_but_negative_is_not(self) -> None:
        p = SchemaGuardian.validate(LivePosition, position(entry_filled_avg_price=0), "p")
        assert p.entry_filled_avg_price == 0
        assert locs(LivePosition, position(exit_filled_avg_price="-1")) == {"exit_filled_avg_price"}

    def test_fee_and_multiplier_bounds(self) -> None:
        assert locs(LivePosition, position(est_fee_usd="-0.01")) == {"est_fee_usd"}
        assert locs(LivePosition, position(multiplier="0")) == {"multiplier"}
        assert SchemaGuardian.validate(LivePosition, position(multiplier=100), "p").multiplier == 100

    def test_status_enum(self) -> None:
        assert locs(LivePosition, position(status="closed")) == {"status"}


class TestStrategyAndJobMetadata:
    def test_strategy(self) -> None:
        s = SchemaGuardian.validate(
            Strategy, {"strategy_id": "momo", "version": "1.1", "deployed_at": T.isoformat(), "params": {"k": 2}}, "s"
        )
        assert s.params == {"k": 2}
        assert locs(Strategy, {"strategy_id": "momo", "version": "1.1", "deployed_at": "2024-03-05T00:00:00"}) == {
            "deployed_at"
        }
        assert locs(Strategy, {"strategy_id": "momo", "deployed_at": T.isoformat()}) == {"version"}

    def job(self, **over: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": "trades-20240305-abc", "loop": "trades", "ds": "2024-03-05", "git_hash": "abc",
            "status": "RUNNING", "started_at": T.isoformat(), "heartbeat_at": T.isoformat(),
        }
        data.update(over)
        return data

    def test_job_metadata_counts_and_reconciliation(self) -> None:
        running = JobMetadata.model_validate(self.job(published=4, loaded=2, duplicates=1))
        assert running.processed == 3 and not running.reconciled
        done = JobMetadata.model_validate(
            self.job(published=4, loaded=2, duplicates=1, dead_lettered=1, dispatched_at=T.isoformat())
        )
        assert done.processed == 4 and done.reconciled
        undispatched = JobMetadata.model_validate(self.job(published=0))
        assert not undispatched.reconciled  # zero of zero, but the dispatcher has not finished

    def test_job_metadata_rules(self) -> None:
        assert locs(JobMetadata, self.job(loaded=-1)) == {"loaded"}
        assert locs(JobMetadata, self.job(status="DONE")) == {"status"}
        assert locs(JobMetadata, self.job(extra_counter=1)) == {"extra_counter"}
        assert locs(JobMetadata, self.job(started_at="2024-03-05T15:00:00")) == {"started_at"}
        assert locs(JobMetadata, self.job(git_hash="x" * 65)) == {"git_hash"}
        for status in RunStatus:
            JobMetadata.model_validate(self.job(status=status.value))


# -- work items ------------------------------------------------------------------------------------


def item(**over: Any) -> WorkItem:
    data: dict[str, Any] = {
        "run_id": "trades-20240305-abc", "loop": "trades", "ds": "2024-03-05", "doc_id": "pos-1",
        "published_at": T.isoformat(),
    }
    data.update(over)
    return WorkItem.model_validate(data)


class TestWorkItem:
    def test_round_trip(self) -> None:
        original = item()
        data, attrs = original.to_message()
        assert attrs == {"run_id": "trades-20240305-abc", "loop": "trades", "ds": "2024-03-05", "doc_id": "pos-1",
                         "schema_version": "1"}
        assert WorkItem.from_message(data, attrs) == original
        assert original.item_id == "trades:pos-1"

    @given(st.from_regex(r"[A-Za-z0-9_.:\-]{1,128}", fullmatch=True))
    def test_encoder_matches_to_message(self, doc_id: str) -> None:
        encode = WorkItem.encoder("trades-20240305-abc", Loop.TRADES, dt.date(2024, 3, 5), T)
        assert encode(doc_id) == item(doc_id=doc_id).to_message()

    @pytest.mark.parametrize("doc_id", ["", "a b", "x" * 129, "é", 'q"'])
    def test_encoder_refuses_what_a_work_item_refuses(self, doc_id: str) -> None:
        encode = WorkItem.encoder("trades-20240305-abc", Loop.TRADES, dt.date(2024, 3, 5), T)
        with pytest.raises(ValidationError):
            item(doc_id=doc_id)
        with pytest.raises(ValidationError):
            encode(doc_id)

    def error_locs(self, data: bytes, attrs: dict[str, str] | None) -> list[str]:
        with pytest.raises(MalformedMessageError) as info:
            WorkItem.from_message(data, attrs)
        assert info.value.reason_code == "MALFORMED"
        return [e["loc"] for e in info.value.errors]

    def test_non_json_body(self) -> None:
        _, attrs = item().to_message()
        assert self.error_locs(b"{not json", attrs) == ["data"]
        assert self.error_locs(b"\xff\xfe", attrs) == ["data"]

    @pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"42", b"null"])
    def test_non_object_body(self, body: bytes) -> None:
        _, attrs = item().to_message()
        with pytest.raises(MalformedMessageError) as info:
            WorkItem.from_message(body, attrs)
        assert info.value.errors[0]["loc"] == "data"
        assert "not a JSON object" in info.value.errors[0]["msg"]
        assert info.value.record_id == "pos-1"  # named from the attributes when the body is unreadable

    @pytest.mark.parametrize("field", ["run_id", "loop", "ds", "doc_id", "published_at"])
    def test_missing_body_field_is_named(self, field: str) -> None:
        data, attrs = item().to_message()
        body = json.loads(data)
        del body[field]
        assert self.error_locs(json.dumps(body).encode(), attrs) == [field]

    @pytest.mark.parametrize(
        ("field", "value"),
        [("loop", "zeta"), ("ds", "2024-13-01"), ("doc_id", "a b"), ("schema_version", "v1"),
         ("published_at", "2024-03-05T15:00:00")],
    )
    def test_invalid_body_field_is_named(self, field: str, value: str) -> None:
        data, attrs = item().to_message()
        body = {**json.loads(data), field: value}
        assert self.error_locs(json.dumps(body).encode(), attrs) == [field]

    def test_extra_body_field_is_refused(self) -> None:
        data, attrs = item().to_message()
        body = {**json.loads(data), "priority": 1}
        assert self.error_locs(json.dumps(body).encode(), attrs) == ["priority"]

    @pytest.mark.parametrize("attr", ["run_id", "loop", "ds", "doc_id", "schema_version"])
    def test_attribute_disagreeing_with_body_is_named(self, attr: str) -> None:
        data, attrs = item().to_message()
        attrs[attr] = "other"
        with pytest.raises(MalformedMessageError) as info:
            WorkItem.from_message(data, attrs)
        assert [e["loc"] for e in info.value.errors] == [f"attributes.{attr}"]
        assert "'other'" in info.value.errors[0]["msg"]

    @pytest.mark.parametrize("attr", ["run_id", "loop", "doc_id"])
    def test_missing_routing_attribute_is_named(self, attr: str) -> None:
        data, attrs = item().to_message()
        del attrs[attr]
        assert self.error_locs(data, attrs) == [f"attributes.{attr}"]

    def test_optional_attributes_may_be_absent(self) -> None:
        data, attrs = item().to_message()
        del attrs["ds"], attrs["schema_version"]
        assert WorkItem.from_message(data, attrs).ds == dt.date(2024, 3, 5)

    def test_no_attributes_names_every_routing_attribute(self) -> None:
        data, _ = item().to_message()
        assert self.error_locs(data, None) == ["attributes.run_id", "attributes.loop", "attributes.doc_id"]

    def test_every_loop_name(self) -> None:
        assert [loop.value for loop in Loop] == ["trades", "rejected_signals", "expired_signals", "accounts"]


# -- warehouse rows --------------------------------------------------------------------------------


class TestWarehouseRows:
    def test_valid_fact_trade(self) -> None:
        row = FactTrade.model_validate(fact_trade())
        assert row.fee_finalized is False and row.actual_fee_usd is None and row.multiplier == 1

    def test_closed_at_not_before_opened_at(self) -> None:
        with pytest.raises(ValidationError, match="closed_at must not be before opened_at"):
            FactTrade.model_validate(fact_trade(closed_at=(T - dt.timedelta(seconds=1)).isoformat()))

    def test_finalized_fee_needs_actual_fee(self) -> None:
        with pytest.raises(ValidationError, match="a finalized fee needs actual_fee_usd"):
            FactTrade.model_validate(fact_trade(fee_finalized=True))
        row = FactTrade.model_validate(fact_trade(fee_finalized=True, actual_fee_usd="0.42"))
        assert row.actual_fee_usd == Decimal("0.42")

    @pytest.mark.parametrize(
        ("field", "value"),
        [("qty", "0"), ("holding_seconds", -1), ("est_fee_usd", "-1"), ("ds", "2024-02-30"),
         ("loaded_at", "2024-03-05T15:00:00"), ("row_id", ""), ("side", "up"), ("gross_pnl_usd", "NaN")],
    )
    def test_fact_trade_field_rules(self, field: str, value: object) -> None:
        with pytest.raises(ValidationError) as info:
            FactTrade.model_validate(fact_trade(**{field: value}))
        assert [".".join(map(str, e["loc"])) for e in info.value.errors()] == [field]

    def test_rows_refuse_extra_columns(self) -> None:
        with pytest.raises(ValidationError) as info:
            FactTrade.model_validate(fact_trade(comment="hi"))
        assert info.value.errors()[0]["loc"] == ("comment",)

    def test_snapshot_and_dead_letter_required_fields(self) -> None:
        with pytest.raises(ValidationError) as info:
            SnapshotAccount.model_validate({"row_id": "r", "ds": "2024-03-05", "run_id": "x", "loaded_at": T})
        missing = {e["loc"][0] for e in info.value.errors()}
        assert {"equity", "last_equity", "delta", "gamma", "theta", "vega", "daily_pnl"} <= missing
        with pytest.raises(ValidationError) as info:
            DeadLetter.model_validate({"row_id": "r", "ds": "2024-03-05", "run_id": "x", "loop": "trades",
                                       "doc_id": "d", "topic": "t", "reason_code": "bad code", "error_message": "e",
                                       "errors_json": "[]", "payload": "", "attributes_json": "{}",
                                       "delivery_attempts": 1, "dead_lettered_at": T})
        assert [e["loc"] for e in info.value.errors()] == [("reason_code",)]

    @pytest.mark.parametrize("model", ALL_TABLES, ids=lambda m: m.__table__)
    def test_every_table_names_each_missing_column_and_refuses_unknown_ones(
        self, model: type[WarehouseRow]
    ) -> None:
        with pytest.raises(ValidationError) as info:
            model.model_validate({"not_a_column": 1})
        errors = {e["loc"][0]: e["type"] for e in info.value.errors()}
        assert errors.pop("not_a_column") == "extra_forbidden"
        required = {name for name, field in model.model_fields.items() if field.is_required()}
        assert errors == dict.fromkeys(required, "missing")
        assert "row_id" in required

    def test_row_id_is_deterministic_and_unambiguous(self) -> None:
        assert row_id_for("fact_trades", "pos-1") == row_id_for("fact_trades", "pos-1")
        assert row_id_for("fact_trades", "pos-1") != row_id_for("fact_trades", "pos-2")
        assert row_id_for("a", "bc") != row_id_for("ab", "c")
        assert len(row_id_for("x")) == 32


class TestBrokerModels:
    def test_vendor_extra_fields_are_ignored(self) -> None:
        order = BrokerOrder.model_validate({"order_id": "o1", "symbol": "AAPL", "side": "buy", "status": "filled",
                                            "filled_qty": "3", "filled_avg_price": "101.5", "client_order_id": "x"})
        assert order.is_filled

    @pytest.mark.parametrize(("qty", "price", "filled"), [("3", "101.5", True), ("0", "101.5", False),
                                                          ("3", "0", False), ("3", None, False)])
    def test_is_filled_needs_positive_qty_and_price(self, qty: str, price: str | None, filled: bool) -> None:
        order = BrokerOrder(order_id="o1", symbol="AAPL", side="buy", status="x",  # type: ignore[arg-type]
                            filled_qty=qty, filled_avg_price=price)  # type: ignore[arg-type]
        assert order.is_filled is filled

    def test_option_position_defaults_to_100_multiplier_and_signed_qty(self) -> None:
        p = OptionPosition(symbol="AAPL240119C00190000", qty=Decimal(-2), delta=Decimal("0.5"), gamma=Decimal("0.1"),
                           theta=Decimal("-0.05"), vega=Decimal("0.2"))
        assert p.multiplier == 100 and p.qty == -2


def test_errors_of_flattens_nested_locations() -> None:
    class Outer(BaseModel):
        inner: LivePosition

    with pytest.raises(ValidationError) as info:
        Outer.model_validate({"inner": position(qty="-1")})
    assert errors_of(info.value) == [
        {"loc": "inner.qty", "msg": "Input should be greater than 0", "type": "greater_than"}
    ]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('"symbol":"\\ud800"', "symbol"),  # a lone surrogate escape, which json.dumps writes for "\ud800"
        ('"symbol":"ok\\udfff"', "symbol"),
        ('"qty":NaN', "qty"),  # a literal Python's json accepts and pydantic-core's parser does not
    ],
)
def test_guardian_names_the_field_of_stored_text_pydantic_core_cannot_parse(text: str, field: str) -> None:
    """Text pydantic-core's JSON parser refuses as a whole is read as the stores read it, so the error
    still names the field instead of calling the record unreadable."""
    from goldthread.adapters.jsonish import dumps

    stored = dumps(position()).replace('"symbol":"AAPL"' if field == "symbol" else '"qty":"3"', text)
    assert text in stored
    with pytest.raises(RecordValidationError) as info:
        SchemaGuardian.validate(LivePosition, stored, "p")
    assert {e["loc"] for e in info.value.errors} == {field}
