"""XML without surprises: no DTD, no entities, no external references; paths into it are
ElementPath (the XPath subset of ``xml.etree.ElementTree``), not XPath 1.0.

Untrusted XML is parsed with expat directly and any document type declaration is refused, so
entity expansion (billion laughs, XXE) cannot happen whatever expat's version does by default.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, NoReturn
from xml.etree import ElementPath as ElementPathSyntax
from xml.parsers import expat

MAX_DEPTH = 256
MAX_ELEMENT_PATH_LENGTH = 500
MAX_DESCENDANT_STEPS = 2
"""``//`` steps are not deduplicated by ElementTree: each one multiplies the matches by the
document's depth, so a path may hold two at most."""


class XmlRejected(ValueError):
    """The document is not well-formed or uses a forbidden construct (DTD, entity)."""


class XmlTooLarge(XmlRejected):
    """The document goes past a depth or element-count limit; ``limit`` names which."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


def _forbid(*_: object) -> NoReturn:
    raise XmlRejected("DTDs and entity declarations are not accepted")


def _tag(name: str) -> str:
    # expat with namespace_separator="}" reports "uri}local"; ElementTree wants "{uri}local"
    return "{" + name if "}" in name else name


def parse_xml(
    data: bytes | str, *, max_depth: int = MAX_DEPTH, max_elements: int | None = None
) -> ET.Element:
    """The document element; ``XmlRejected`` when it is not well-formed or has a DTD,
    ``XmlTooLarge`` past ``max_depth`` (at most ``MAX_DEPTH``) or ``max_elements``."""
    max_depth = min(max_depth, MAX_DEPTH)
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.StartDoctypeDeclHandler = _forbid
    parser.EntityDeclHandler = _forbid
    parser.UnparsedEntityDeclHandler = _forbid
    parser.ExternalEntityRefHandler = _forbid
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    depth = 0
    elements = 0

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth, elements
        depth += 1
        elements += 1
        if depth > max_depth:
            raise XmlTooLarge("depth", f"elements are nested deeper than {max_depth}")
        if max_elements is not None and elements > max_elements:
            raise XmlTooLarge("elements", f"the document has more than {max_elements} elements")
        builder.start(_tag(name), {_tag(k): v for k, v in attrs.items()})

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1
        builder.end(_tag(name))

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise XmlRejected(f"not well-formed XML: {exc}") from exc
    return builder.close()


_ATTR_TAIL = re.compile(r"/@([A-Za-z_][\w.-]*)$")
_NAME = r"[A-Za-z_][\w.-]*"
_TAG = re.compile(rf"\*|-?\d+|(?:\{{[^{{}}\s]*\}})?(?:\*|{_NAME})")
"""A name step, ``*``, a position, or a ``{namespace}`` name: ElementTree's tokenizer takes
any other run of characters (``a|b``) as a tag name that silently matches nothing."""


@dataclass(frozen=True, slots=True)
class ElementPath:
    """An absolute ElementPath expression: ``/a/b``, ``//b``, ``*``, ``.``, ``..``, predicates
    ``[@attr]``, ``[@attr='v']``, ``[tag]``, ``[tag='text']``, ``[2]``, ``[last()]``, and a final
    ``/@attr`` or ``/text()``. The value of a match is that attribute, or its whole text."""

    source: str
    element_path: str
    attribute: str | None

    def values(self, root: ET.Element) -> list[str]:
        wrapper = ET.Element("_portway_document")
        wrapper.append(root)
        found = wrapper.findall(self.element_path)
        if self.attribute is not None:
            return [e.attrib[self.attribute] for e in found if self.attribute in e.attrib]
        return ["".join(e.itertext()) for e in found]


def compile_element_path(path: str) -> ElementPath:
    """Compile once; ``ValueError`` naming the problem: a relative path, what ElementTree does not
    support (most XPath functions and axes), more than ``MAX_DESCENDANT_STEPS`` ``//``."""
    if len(path) > MAX_ELEMENT_PATH_LENGTH:
        raise ValueError(f"ElementPath is longer than {MAX_ELEMENT_PATH_LENGTH} characters")
    if not path.startswith("/"):
        raise ValueError("ElementPath must be absolute (start with '/')")
    if path.count("//") > MAX_DESCENDANT_STEPS:
        raise ValueError(f"ElementPath may use '//' at most {MAX_DESCENDANT_STEPS} times")
    source = path
    attribute = None
    match = _ATTR_TAIL.search(path)
    if match:
        attribute = match.group(1)
        path = path[: match.start()]
    elif path.endswith("/text()"):
        path = path[: -len("/text()")]
    element_path = "." + path
    try:
        for op, tag in ElementPathSyntax.xpath_tokenizer(element_path):
            if not op and not tag:
                raise ValueError("ElementPath has whitespace outside quotes")
            if tag and not _TAG.fullmatch(tag):
                raise ValueError(f"not a supported ElementPath expression: {tag!r}")
        ET.Element("x").findall(element_path)
    except (SyntaxError, KeyError, TypeError) as exc:
        reason = exc or "invalid path"
        raise ValueError(f"not a supported ElementPath expression: {reason}") from exc
    return ElementPath(source, element_path, attribute)


def element_to_data(element: ET.Element) -> Any:
    """XML → JSON-ready data: attributes as '@name', text as '#text' when mixed, repeated
    children as lists; a leaf without attributes becomes its text."""
    children = list(element)
    text = (element.text or "").strip()
    if not children and not element.attrib:
        return text
    out: dict[str, Any] = {f"@{_local(k)}": v for k, v in element.attrib.items()}
    for child in children:
        key = _local(child.tag)
        value = element_to_data(child)
        if key in out:
            existing = out[key]
            if isinstance(existing, list) and getattr(existing, "_portway_repeat", False):
                existing.append(value)
            else:
                out[key] = _Repeat([existing, value])
        else:
            out[key] = value
    if text:
        out["#text"] = text
    return {k: list(v) if isinstance(v, _Repeat) else v for k, v in out.items()}


class _Repeat(list[Any]):
    _portway_repeat = True


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]*$")


def xml_name(key: str) -> str:
    """A JSON key as an XML element name: invalid characters become '_'."""
    if _XML_NAME.fullmatch(key) and not key.lower().startswith("xml"):
        return key
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", key) or "_"
    if not re.match(r"[A-Za-z_]", cleaned) or cleaned.lower().startswith("xml"):
        cleaned = "_" + cleaned
    return cleaned


def data_to_element(name: str, value: Any, item_name: str) -> ET.Element:
    element = ET.Element(xml_name(name))
    _fill(element, value, item_name)
    return element


def _fill(element: ET.Element, value: Any, item_name: str) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            if isinstance(child, list):
                for item in child:
                    element.append(data_to_element(key, item, item_name))
            else:
                element.append(data_to_element(key, child, item_name))
    elif isinstance(value, list):
        for item in value:
            element.append(data_to_element(item_name, item, item_name))
    elif value is None:
        pass
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    else:
        element.text = str(value)
