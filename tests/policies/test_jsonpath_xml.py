from __future__ import annotations

import pytest

from portway.policies.jsonpath import compile_jsonpath, format_path
from portway.policies.xmlsafe import XmlRejected, compile_xpath, element_to_data, parse_xml

DOC = {"a": {"b": [1, 2, {"c": "x"}]}, "odd key": 5, "c": "top"}


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("$", [DOC]),
        ("$.a.b[0]", [1]),
        ("$.a.b[-1].c", ["x"]),
        ("$['odd key']", [5]),
        ("$.a.b[*]", [1, 2, {"c": "x"}]),
        ("$..c", ["top", "x"]),
        ("$.a.missing", []),
        ("$.a.b[9]", []),
    ],
)
def test_jsonpath_finds(path: str, found: list[object]) -> None:
    assert sorted(map(repr, compile_jsonpath(path).find(DOC))) == sorted(map(repr, found))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("a.b", "JSONPath must start with '$'"),
        ("$.a[?(@.x)]", "bad bracket expression at position 3 of the JSONPath"),
        ("$.a b", "unexpected ' ' at position 3 of the JSONPath"),
        ("$" + ".a" * 40, "JSONPath has more than 32 steps"),
    ],
)
def test_jsonpath_rejects(path: str, message: str) -> None:
    with pytest.raises(
        ValueError,
        match="^"
        + message.replace("[", r"\[")
        .replace("?", r"\?")
        .replace("(", r"\(")
        .replace(")", r"\)")
        .replace("$", r"\$")
        + "$",
    ):
        compile_jsonpath(path)


def test_format_path() -> None:
    assert format_path(["items", 0, "odd key", "qty"]) == "$.items[0]['odd key'].qty"


def test_xml_refuses_entities_and_dtds() -> None:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>'
    )
    xxe = b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><x>&xxe;</x>'
    for hostile in (laughs, xxe, b"<!DOCTYPE x><x/>"):
        with pytest.raises(XmlRejected, match="DTDs and entity declarations are not accepted"):
            parse_xml(hostile)
    with pytest.raises(XmlRejected, match="not well-formed XML"):
        parse_xml(b"<a><b></a>")


def test_xml_depth_is_bounded() -> None:
    with pytest.raises(XmlRejected, match="nested deeper than 256"):
        parse_xml(b"<a>" * 300 + b"</a>" * 300)


def test_xml_namespaces_and_conversion() -> None:
    root = parse_xml(b'<o xmlns="urn:x" id="1"><i>a</i><i>b</i><n>t</n></o>')
    assert root.tag == "{urn:x}o"
    assert element_to_data(root) == {"@id": "1", "i": ["a", "b"], "n": "t"}


def test_xpath_compile() -> None:
    assert compile_xpath("/a/b/@c").attribute == "c"
    with pytest.raises(ValueError, match="XPath must be absolute"):
        compile_xpath("a/b")
    with pytest.raises(ValueError, match="not a supported XPath"):
        compile_xpath("/a[")
