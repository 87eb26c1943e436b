"""INV-21: every knob validated before side effects, errors naming key, value, expectation, source."""

from __future__ import annotations

import pytest

from pytest_cbchaos.recovery import RecoveryConfig, RecoveryConfigError

NUMERIC_KEYS = ["stall_timeout", "first_event_timeout", "tool_stall_timeout", "tick", "probe_timeout", "heartbeat_interval",
                "sse_silence_timeout", "sse_connect_timeout", "subscribe_timeout", "sse_max_reconnects",
                "request_timeout", "control_attempts", "idle_poll_interval", "idle_grace", "start_timeout",
                "abort_grace", "max_recoveries", "consumer_stop_timeout", "max_turn_seconds", "unreachable_refusals"]


def test_defaults_match_spec() -> None:
    c = RecoveryConfig()
    assert (c.stall_timeout, c.tool_stall_timeout, c.tick, c.probe_timeout) == (180, 180, 0.25, 2)
    assert (c.heartbeat_interval, c.sse_silence_timeout, c.max_recoveries, c.control_attempts) == (10, 25, 2, 3)
    assert c.permission_policy == "reject" and c.max_turn_seconds == 0
    assert c.first_event_timeout == 60 and c.bootstrap_timeout == 180  # never shorter than a stall


@pytest.mark.parametrize("key", NUMERIC_KEYS)
@pytest.mark.parametrize("bad", ["abc", "10s", "", "nan", "inf", "-1"])
def test_env_rejects_bad_values_with_location(key: str, bad: str) -> None:
    env = {f"CBCHAOS_RECOVERY_{key.upper()}": bad}
    if bad == "-1" and key in ("idle_poll_interval", "max_turn_seconds", "stall_timeout"):
        pass  # negative is still invalid for these
    with pytest.raises(RecoveryConfigError) as info:
        RecoveryConfig.load(env=env)
    msg = str(info.value)
    assert key in msg and repr(bad) in msg and f"env CBCHAOS_RECOVERY_{key.upper()}" in msg and "expected" in msg


@pytest.mark.parametrize("key", NUMERIC_KEYS)
def test_keyword_rejects_negative(key: str) -> None:
    with pytest.raises(RecoveryConfigError, match=f"{key}=-1.*keyword"):
        RecoveryConfig.load({key: -1}, env={})


def test_precedence_keyword_env_ini_default() -> None:
    c = RecoveryConfig.load({"stall_timeout": 50}, env={"CBCHAOS_RECOVERY_STALL_TIMEOUT": "40",
                                                        "CBCHAOS_RECOVERY_TICK": "0.5"},
                            ini={"cbchaos_recovery_stall_timeout": "30", "cbchaos_recovery_probe_timeout": "3"})
    assert (c.stall_timeout, c.tick, c.probe_timeout, c.tool_stall_timeout) == (50, 0.5, 3, 50)


def test_ini_error_names_file_and_line() -> None:
    with pytest.raises(RecoveryConfigError, match=r"pytest.ini:7.*cbchaos_recovery_tick.*0.05 <= tick"):
        RecoveryConfig.load(env={}, ini={"cbchaos_recovery_tick": ("5", "pytest.ini:7")})


def test_unknown_env_var_suggests_close_match() -> None:
    with pytest.raises(RecoveryConfigError, match="did you mean CBCHAOS_RECOVERY_STALL_TIMEOUT"):
        RecoveryConfig.load(env={"CBCHAOS_RECOVERY_STAL_TIMEOUT": "3"})


def test_cross_field_rules() -> None:
    with pytest.raises(RecoveryConfigError, match="stall_timeout.*probe_timeout"):
        RecoveryConfig(stall_timeout=2, probe_timeout=2)
    with pytest.raises(RecoveryConfigError, match="tool_stall_timeout.*>= stall_timeout"):
        RecoveryConfig(stall_timeout=10, tool_stall_timeout=5)
    with pytest.raises(RecoveryConfigError, match="sse_silence_timeout.*1.5"):
        RecoveryConfig(heartbeat_interval=10, sse_silence_timeout=12)
    with pytest.raises(RecoveryConfigError, match="control_attempts.*>= 1"):
        RecoveryConfig(control_attempts=0)  # "0 retries" never means "never send"
    with pytest.raises(RecoveryConfigError, match="an integer"):
        RecoveryConfig.load({"max_recoveries": 1.5}, env={})
    with pytest.raises(RecoveryConfigError, match="permission_policy"):
        RecoveryConfig(permission_policy="maybe")
    assert RecoveryConfig(stall_timeout=0).stall_timeout == 0  # 0 disables
    with pytest.raises(RecoveryConfigError, match="first_event_timeout=0.*> probe_timeout"):
        RecoveryConfig(first_event_timeout=0)  # the bootstrap deadline cannot be switched off
    assert RecoveryConfig(stall_timeout=3, first_event_timeout=20).bootstrap_timeout == 20
    assert RecoveryConfig.load(env={"CBCHAOS_RECOVERY_FIRST_EVENT_TIMEOUT": "45"}).first_event_timeout == 45


def test_config_error_is_a_value_error() -> None:
    assert issubclass(RecoveryConfigError, ValueError)
