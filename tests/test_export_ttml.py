"""EBU-TT-D (TTML) documents: read back by ttconv's IMSC reader (not the writer that made them)
and checked against EBU-TT-D's rules with a plain XML parser."""

from __future__ import annotations

import re
import xml.etree.ElementTree as et
from fractions import Fraction

from tvcaption.export_ttml import EBU_TT_D, TT, TTP, TTS, ttml_document

CUES = [(0.0, 1.2, "a man <rides> & a bike\nsecond line"),
        (1.2, 3.04, "臺灣總統大選\x01 今日開票"),
        (3600.5, 3601.75, "an hour in: \"quoted\" 'text'")]


def read_back(document: str) -> list[tuple[Fraction, Fraction, str]]:
    from ttconv import model
    from ttconv.imsc import reader

    root = et.fromstring(document.encode("utf-8"))
    doc = reader.to_model(et.ElementTree(root))
    cues = []
    for p in doc.get_body().first_child():
        parts: list[str] = []

        def walk(element):
            if isinstance(element, model.Text):
                parts.append(element.get_text())
            elif isinstance(element, model.Br):
                parts.append("\n")
            for child in element:
                walk(child)

        walk(p)
        cues.append((p.get_begin() or Fraction(0), p.get_end(), "".join(parts)))
    return cues


def test_every_cue_reads_back_with_its_times_and_text():
    cues = read_back(ttml_document(CUES))
    assert [(float(b), float(e)) for b, e, _ in cues] == [(s, e) for s, e, _ in CUES]
    assert [text for _, _, text in cues] == ["a man <rides> & a bike\nsecond line", "臺灣總統大選 今日開票",
                                             "an hour in: \"quoted\" 'text'"]  # control character dropped


def test_the_document_follows_ebu_tt_d():
    document = ttml_document(CUES, language="en")
    assert document.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    root = et.fromstring(document.encode("utf-8"))
    assert root.tag == f"{{{TT}}}tt" and root.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    assert root.get(f"{{{TTP}}}timeBase") == "media"
    assert [e.text for e in root.iter("{urn:ebu:tt:metadata}conformsToStandard")] == [EBU_TT_D]
    styles = {s.get("{http://www.w3.org/XML/1998/namespace}id") for s in root.iter(f"{{{TT}}}style")}
    region_ids = {r.get("{http://www.w3.org/XML/1998/namespace}id") for r in root.iter(f"{{{TT}}}region")}
    body = root.find(f"{{{TT}}}body")
    assert set(body.attrib) <= {"style"}  # EBU-TT-D's body: style, ttm:agent, ttm:role, no region
    assert [div.get("region") for div in body.iter(f"{{{TT}}}div")] == ["bottom"] and "bottom" in region_ids
    ids = [p.get("{http://www.w3.org/XML/1998/namespace}id") for p in root.iter(f"{{{TT}}}p")]
    assert all(ids) and len(set(ids)) == len(ids)  # EBU-TT-D: every p has a unique xml:id
    timing = re.compile(r"^\d{2}:\d{2}:\d{2}\.\d{3}$")
    paragraphs = list(root.iter(f"{{{TT}}}p"))
    assert len(paragraphs) == 3
    for p in paragraphs:
        assert timing.match(p.get("begin")) and timing.match(p.get("end"))
        for element in [p, *p.iter(f"{{{TT}}}span")]:
            assert element.get("style") in styles
            assert not [k for k in element.attrib if k.startswith(f"{{{TTS}}}")]  # no inline styling
    assert paragraphs[2].get("begin") == "01:00:00.500"


# EBU-TT-D (Tech 3380) as its XML Schema has it: the attributes each element may carry (namespace
# URIs in braces; tts:* on style and region as the schema lists them) and the head's children in order
XML = "{http://www.w3.org/XML/1998/namespace}"
TTM = "{http://www.w3.org/ns/ttml#metadata}"
ALLOWED = {
    "tt": {f"{XML}space", f"{{{TTP}}}timeBase", f"{{{TTP}}}cellResolution", f"{XML}lang"},
    "head": set(), "styling": set(), "layout": set(), "metadata": set(),
    "style": {f"{XML}id"} | {f"{{{TTS}}}{name}" for name in (
        "direction", "fontFamily", "fontSize", "lineHeight", "textAlign", "color", "backgroundColor", "fontStyle",
        "fontWeight", "textDecoration", "unicodeBidi", "wrapOption")},
    "region": {f"{XML}id", "style"} | {f"{{{TTS}}}{name}" for name in (
        "origin", "extent", "displayAlign", "padding", "writingMode", "showBackground", "overflow")},
    "body": {"style", f"{TTM}agent", f"{TTM}role"},
    "div": {f"{XML}id", "region", "style", f"{TTM}agent", f"{TTM}role", f"{XML}lang"},
    "p": {f"{XML}id", f"{XML}space", f"{XML}lang", "region", "style", "begin", "end", f"{TTM}agent", f"{TTM}role"},
    "span": {f"{XML}id", f"{XML}space", f"{XML}lang", "style", "begin", "end", f"{TTM}agent", f"{TTM}role"},
    "br": {f"{TTM}role"},
}
REQUIRED = {"tt": {f"{{{TTP}}}timeBase", f"{XML}lang"}, "style": {f"{XML}id"}, "p": {f"{XML}id"},
            "region": {f"{XML}id", f"{{{TTS}}}origin", f"{{{TTS}}}extent"}}


def test_every_element_carries_only_what_ebu_tt_d_allows():
    root = et.fromstring(ttml_document(CUES, language="en").encode("utf-8"))
    assert [child.tag for child in root.find(f"{{{TT}}}head")] == [f"{{{TT}}}{n}" for n in ("metadata", "styling", "layout")]
    seen = set()
    for element in root.iter():
        if not element.tag.startswith(f"{{{TT}}}"):
            continue  # ebuttm metadata inside tt:metadata: any other namespace may go there
        name = element.tag[len(TT) + 2:]
        seen.add(name)
        assert set(element.attrib) <= ALLOWED[name], (name, set(element.attrib) - ALLOWED[name])
        assert REQUIRED.get(name, set()) <= set(element.attrib), (name, element.attrib)
    assert {"tt", "head", "styling", "layout", "region", "body", "div", "p", "span", "br"} <= seen


def test_no_cues_is_a_document_without_a_body():
    """EBU-TT-D: a div needs a p and a body a div, but the body may be left out."""
    root = et.fromstring(ttml_document([], language="en").encode("utf-8"))
    assert root.find(f"{{{TT}}}body") is None and root.find(f"{{{TT}}}head/{{{TT}}}layout/{{{TT}}}region") is not None
    assert read_back(ttml_document([(0.0, 1.0, "one")])) == [(Fraction(0), Fraction(1), "one")]
