from __future__ import annotations

import re

import pytest

from portway.policies.jsonpath import compile_jsonpath, format_path
from portway.policies.xmlsafe import (
    XmlRejected,
    compile_element_path,
    element_to_data,
    parse_xml,
)

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
        ("$.a[0:2]", "bad bracket expression at position 3 of the JSONPath"),
        ("$.a['b','c']", "bad bracket expression at position 3 of the JSONPath"),
        ("$.a[0,1]", "bad bracket expression at position 3 of the JSONPath"),
        ("$.length()", "unexpected '(' at position 8 of the JSONPath"),
        ("$[" + "9" * 12 + "]", "bad bracket expression at position 1 of the JSONPath"),
        ("$." + "a" * 600, "JSONPath is longer than 500 characters"),
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


def test_jsonpath_on_a_hostile_document_stays_bounded() -> None:
    """Recursive descent over the deepest document a policy reads: every node once per '..'."""
    deep: object = "x"
    for _ in range(255):
        deep = [deep]
    assert compile_jsonpath("$..*").find(deep)[-1] == "x"
    assert len(compile_jsonpath("$..*").find(deep)) == 255
    wide = {"k": [{"k": i} for i in range(10_000)]}
    assert len(compile_jsonpath("$..k").find(wide)) == 10_001


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


def test_element_path_compile() -> None:
    assert compile_element_path("/a/b/@c").attribute == "c"
    assert compile_element_path("/a/b/@c").source == "/a/b/@c"
    with pytest.raises(ValueError, match="ElementPath must be absolute"):
        compile_element_path("a/b")
    with pytest.raises(ValueError, match="not a supported ElementPath expression"):
        compile_element_path("/a[")


ORDER = b"<o id='7'><i n='1'>a</i><i n='2'>b<x>c</x></i><t>t</t></o>"


@pytest.mark.parametrize(
    ("path", "values"),
    [
        ("/o/i", ["a", "bc"]),
        ("/o/@id", ["7"]),
        ("//i/@n", ["1", "2"]),
        ("/o/i[@n='2']/x", ["c"]),
        ("/o/i[2]/@n", ["2"]),
        ("/o/i[last()]/@n", ["2"]),
        ("/o/i[last()-1]/@n", ["1"]),
        ("/o/i[x='c']/@n", ["2"]),
        ("/o/i[.='a']/@n", ["1"]),
        ("/o/*/text()", ["a", "bc", "t"]),
        ("/o/i[x]/@n", ["2"]),
        ("/o/nothing", []),
    ],
)
def test_element_path_values(path: str, values: list[str]) -> None:
    assert compile_element_path(path).values(parse_xml(ORDER)) == values


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/o/i[position()=1]", "not a supported ElementPath expression"),
        ("count(/o/i)", "ElementPath must be absolute"),
        ("/o/i[contains(., 'a')]", "not a supported ElementPath expression"),
        ("/o/ancestor::x", "not a supported ElementPath expression"),
        ("/o/i | /o/t", "ElementPath has whitespace outside quotes"),
        ("/o/ i", "ElementPath has whitespace outside quotes"),
        ("/o/i|/o/t", "not a supported ElementPath expression: 'i|'"),
        ("//a//b//c", "may use '//' at most 2 times"),
        ("/" + "a/" * 300, "longer than 500 characters"),
        ("/o/i[@n='1' or @n='2']", "ElementPath has whitespace outside quotes"),
        ("/o/i[@n='1'or@n='2']", "not a supported ElementPath expression"),
    ],
)
def test_element_path_refuses_what_it_does_not_run(path: str, message: str) -> None:
    """XPath 1.0 that ElementTree would run differently (or silently match nothing with) is
    refused when the policy is saved, naming the problem, never at request time."""
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_element_path(path)


def test_element_path_on_a_hostile_document_stays_bounded() -> None:
    """A chain as deep as the parser allows, searched with the two '//' a path may hold."""
    deep = b"<a>" * 255 + b"x" + b"</a>" * 255
    found = compile_element_path("//a//a/text()").values(parse_xml(deep))
    assert len(found) == sum(range(255))  # every (ancestor, descendant) pair, not more
    assert set(found) == {"x"}
