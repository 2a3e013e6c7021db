"""Only DataWorks hosts: the region allow-list is the official SDK's endpoint map, and nothing else becomes a host."""

from __future__ import annotations

import importlib.util
import string
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disync_operator.dataworks import REGION_ENDPOINTS, UnknownRegionError, _regions, allowed_regions, resolve_endpoint

CENTRAL = "dataworks.aliyuncs.com"
REPO = Path(__file__).resolve().parents[2]


def sdk_client_class() -> Any:
    """The official SDK's Client, or a skip: the SDK is a test dependency only."""
    try:
        from alibabacloud_dataworks_public20200518.client import Client  # type: ignore[import-untyped]
    except ImportError as error:
        pytest.skip(f"the official DataWorks SDK (alibabacloud-dataworks-public20200518) is not importable: {error}")
    return Client


def sdk_client(region: str, network: str | None = None) -> Any:
    from alibabacloud_tea_openapi.utils_models import Config  # type: ignore[import-untyped]

    client_class = sdk_client_class()
    # Dummy keys: construction then only fills in configuration, without the default credentials chain.
    return client_class(Config(region_id=region, network=network, access_key_id="unused", access_key_secret="unused"))


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_regions", REPO / "hack" / "gen_regions.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------- the map itself


def test_region_endpoints_equal_the_installed_sdk_map() -> None:
    assert dict(REGION_ENDPOINTS) == sdk_client("cn-shanghai")._endpoint_map


def test_region_module_is_what_the_generator_writes() -> None:
    # Also pins the SDK version named in the file's header to the installed one.
    sdk_client_class()
    generator = load_generator()
    expected = generator.render(generator.sdk_endpoint_map(), importlib.metadata.version(_regions.SDK_DISTRIBUTION))
    assert Path(_regions.__file__).read_text(encoding="utf-8") == expected, "run hack/gen_regions.py"


def test_region_endpoints_are_read_only() -> None:
    with pytest.raises(TypeError):
        REGION_ENDPOINTS["oss-cn-hangzhou"] = "evil.example.com"  # type: ignore[index]
    assert "oss-cn-hangzhou" not in REGION_ENDPOINTS


def test_map_hosts_are_dataworks_hosts() -> None:
    # What the rest of this file relies on: each host is the region's own or the central one.
    for region, host in REGION_ENDPOINTS.items():
        assert host in (f"dataworks.{region}.aliyuncs.com", CENTRAL), region


# ---------------------------------------------------------------------------------------------- resolution


@pytest.mark.parametrize("region", sorted(REGION_ENDPOINTS))
def test_every_sdk_region_resolves_to_the_sdks_host(region: str) -> None:
    host = sdk_client(region)._endpoint
    assert host == REGION_ENDPOINTS[region]
    assert resolve_endpoint(region) == f"https://{host}"
    vpc = resolve_endpoint(region, vpc=True)
    if host == CENTRAL:
        # The SDK keeps the central host whatever the network; so do we.
        assert sdk_client(region, network="vpc")._endpoint == CENTRAL
        assert vpc == f"https://{CENTRAL}"
    else:
        assert vpc == f"https://dataworks-vpc.{region}.aliyuncs.com"


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("cn-shanghai", "dataworks.cn-shanghai.aliyuncs.com"),
        ("cn-hangzhou", "dataworks.cn-hangzhou.aliyuncs.com"),
        ("cn-qingdao", CENTRAL),
        ("cn-huhehaote", CENTRAL),
        ("ap-south-1", CENTRAL),
    ],
)
def test_known_hosts(region: str, expected: str) -> None:
    assert resolve_endpoint(region) == f"https://{expected}"


BAD_REGIONS = [
    "oss-cn-hangzhou",  # dataworks.oss-cn-hangzhou.aliyuncs.com would be an OSS bucket anyone can own
    "cn-hangzhou.evil",
    "cn-hangzhou.evil.com",
    "x",
    "ap-southeast-7",  # well-formed but not in the SDK map: only extra_regions admits it
    "CN-SHANGHAI",
    "cn-shanghai-vpc",
    "cn-shanghai:443",
    "cn-shanghai@evil.example.com",
    "cn-shanghai/x",
    "cn-shanghai\x00",
    "cn-shangh\u0430i",  # a Cyrillic "a"
    "dataworks.aliyuncs.com",
    "127.0.0.1",
    "..",
    "cn-shanghai cn-beijing",
    "a" * 500,
]


@pytest.mark.parametrize("region", BAD_REGIONS)
def test_anything_else_is_an_unknown_region(region: str) -> None:
    for vpc in (False, True):
        with pytest.raises(UnknownRegionError) as info:
            resolve_endpoint(region, vpc=vpc)
        error = info.value
        assert isinstance(error, ValueError)
        assert error.region == region.strip()
        assert error.allowed == tuple(sorted(REGION_ENDPOINTS))
        assert "is not a DataWorks region" in str(error)


def test_unknown_region_message_lists_the_public_regions_compactly() -> None:
    with pytest.raises(UnknownRegionError) as info:
        resolve_endpoint("eu-nowhere-9", extra_regions=["ap-southeast-7"])
    message = str(info.value)
    assert message.startswith("'eu-nowhere-9' is not a DataWorks region; public regions: ap-{")
    assert "ap-southeast-7" in info.value.allowed
    assert ",southeast-7" in message
    assert "shanghai," in message
    assert " us-{east-1,west-1}" in message
    # Alibaba's own test, internal and cell regions stay accepted but are not offered.
    for internal in ("internal-test-1", "inner", "-pop", "et15-b01", "nebula", "yushanfang"):
        assert internal not in message
    assert "cn-hangzhou-internal-test-1" in info.value.allowed
    # Grouped by area in sorted order; short enough for a Kubernetes Event (1 KB).
    areas = [group.split("-", 1)[0] for group in message.split("public regions: ", 1)[1].split(" ")]
    assert areas == sorted(set(areas))
    assert len(message) < 600


@pytest.mark.parametrize(
    ("typo", "meant"), [("cn-shanghia", "cn-shanghai"), ("cn-hangzou", "cn-hangzhou"), ("us-east1", "us-east-1")]
)
def test_a_typo_is_answered_with_the_region_meant(typo: str, meant: str) -> None:
    with pytest.raises(UnknownRegionError) as info:
        resolve_endpoint(typo)
    assert f"did you mean '{meant}'?" in str(info.value)


def test_unknown_region_message_cuts_a_long_region_short() -> None:
    with pytest.raises(UnknownRegionError) as info:
        resolve_endpoint("a" * 5000)
    assert len(str(info.value)) < 1100
    assert info.value.region == "a" * 5000


@pytest.mark.parametrize("region", [None, "", "   "])
def test_no_region_is_a_plain_value_error(region: str | None) -> None:
    with pytest.raises(ValueError, match="no region given") as info:
        resolve_endpoint(region)
    assert not isinstance(info.value, UnknownRegionError)


@settings(max_examples=300, deadline=None)
@given(
    region=st.one_of(
        st.text(max_size=40),
        st.text(alphabet=string.ascii_lowercase + string.digits + "-.:/@", max_size=40),
        st.sampled_from(sorted(REGION_ENDPOINTS)).flatmap(
            lambda known: st.sampled_from([known + ".evil.com", "oss-" + known, known + "-x", known.upper()])
        ),
    ),
    vpc=st.booleans(),
)
def test_no_string_reaches_a_host_outside_the_map(region: str, vpc: bool) -> None:
    try:
        url = resolve_endpoint(region, vpc=vpc)
    except UnknownRegionError:
        assert region.strip() not in REGION_ENDPOINTS
        return
    except ValueError:
        assert not region.strip()
        return
    known = region.strip()
    assert known in REGION_ENDPOINTS
    host = httpx.URL(url).host
    assert host in (REGION_ENDPOINTS[known], f"dataworks-vpc.{known}.aliyuncs.com")


# ------------------------------------------------------------------------------------------- extra regions


def test_extra_regions_are_allowed_with_the_regional_host() -> None:
    extra = ("ap-southeast-7", " mx-central-1 ")
    assert resolve_endpoint("ap-southeast-7", extra_regions=extra) == "https://dataworks.ap-southeast-7.aliyuncs.com"
    assert resolve_endpoint("mx-central-1", extra_regions=extra) == "https://dataworks.mx-central-1.aliyuncs.com"
    assert (
        resolve_endpoint("mx-central-1", vpc=True, extra_regions=extra)
        == "https://dataworks-vpc.mx-central-1.aliyuncs.com"
    )
    with pytest.raises(UnknownRegionError):
        resolve_endpoint("mx-central-2", extra_regions=extra)


def test_an_extra_region_never_changes_a_mapped_host() -> None:
    # Listing a region the SDK already knows keeps the SDK's host (cn-qingdao is served centrally).
    assert resolve_endpoint("cn-qingdao", extra_regions=["cn-qingdao"]) == f"https://{CENTRAL}"
    assert resolve_endpoint("cn-qingdao", vpc=True, extra_regions=["cn-qingdao"]) == f"https://{CENTRAL}"


@pytest.mark.parametrize(
    "extra",
    [
        "",
        "x",
        "cn",
        "cn-hangzhou.evil",
        "cn-hangzhou.evil.com",
        "CN-NEW-1",
        "cn-new-1/",
        "cn-new-1:443",
        "cn_new_1",
        "-cn-new-1",
        "cn-new-1-",
        "cn--new",
        "cn-new\n-1",
        "cn-new-1 x",
        "cn-a-b-c-d-e",
        "c-new-1",
        "cn-" + "a" * 60,
        "cn-n\u0435w-1",  # a Cyrillic "e"
    ],
)
def test_malformed_extra_regions_are_refused(extra: str) -> None:
    with pytest.raises(ValueError, match="invalid extra DataWorks region id") as info:
        resolve_endpoint("cn-shanghai", extra_regions=[extra])
    assert not isinstance(info.value, UnknownRegionError)
    with pytest.raises(ValueError, match="invalid extra DataWorks region id"):
        allowed_regions([extra])


def test_extra_regions_must_be_a_collection() -> None:
    with pytest.raises(TypeError, match="not a string"):
        resolve_endpoint("ap-southeast-7", extra_regions="ap-southeast-7")


def test_allowed_regions() -> None:
    assert allowed_regions() == sorted(REGION_ENDPOINTS)
    with_extra = allowed_regions(["ap-southeast-7", "cn-shanghai"])
    assert with_extra == sorted({*REGION_ENDPOINTS, "ap-southeast-7"})
    # Every region of the SDK would also pass as an extra region: the pattern is not narrower than reality.
    assert allowed_regions(REGION_ENDPOINTS) == sorted(REGION_ENDPOINTS)
