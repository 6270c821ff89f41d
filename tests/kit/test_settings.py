import pytest

from subsecond.kit.settings import EnvReader, ServerSettings, SettingsError


def test_defaults_when_unset() -> None:
    env = EnvReader({}, "X_")
    settings = ServerSettings.read(env, default_port=1, default_metrics_port=2)
    env.done()
    assert (settings.port, settings.metrics_port, settings.log_level) == (1, 2, "INFO")


def test_every_problem_is_reported_at_once() -> None:
    env = EnvReader({"X_PORT": "http", "X_METRICS_PORT": "70000", "X_LOG_LEVEL": "loud"}, "X_")
    ServerSettings.read(env, default_port=1, default_metrics_port=2)
    with pytest.raises(SettingsError) as error:
        env.done()
    message = str(error.value)
    assert "X_PORT='http'" in message
    assert "X_METRICS_PORT='70000'" in message
    assert "LOG_LEVEL='LOUD'" in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("a=b", {"a": "b"}), (" k1 = t1 , k2=t2 ", {"k1": "t1", "k2": "t2"})],
)
def test_mapping(raw: str, expected: dict[str, str]) -> None:
    env = EnvReader({"X_MAP": raw}, "X_")
    assert env.mapping("MAP", {}) == expected
    env.done()


@pytest.mark.parametrize("raw", ["a", "a=", "=b", "a=b,c"])
def test_mapping_rejects_malformed_pairs(raw: str) -> None:
    env = EnvReader({"X_MAP": raw}, "X_")
    env.mapping("MAP", {})
    with pytest.raises(SettingsError, match="X_MAP"):
        env.done()


def test_flag_and_names() -> None:
    env = EnvReader({"X_ON": "yes", "X_TIERS": "small, large"}, "X_")
    assert env.flag("ON", False) is True
    assert env.names("TIERS", ()) == ("small", "large")
    env.done()
    bad = EnvReader({"X_ON": "maybe", "X_TIERS": "a b"}, "X_")
    bad.flag("ON", False)
    bad.names("TIERS", ())
    with pytest.raises(SettingsError, match=r"X_ON.*X_TIERS"):
        bad.done()


def test_a_string_set_to_empty_is_empty_not_the_default() -> None:
    env = EnvReader({"X_URL": "", "X_NAME": "  b  "}, "X_")
    assert env.text("URL", "redis://default") == ""
    assert env.text("NAME", "a") == "b"
    assert env.text("MISSING", "a") == "a"
