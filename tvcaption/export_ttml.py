"""EBU-TT-D (TTML, IMSC1 text profile) documents for broadcast playout, made with ttconv.

The cues come laid out by :mod:`tvcaption.export` (the same cue rules as SRT and WebVTT: at
most two lines of 42 characters, no cue under 1 s, no overlap); this module only turns them into
a TTML document: ttconv's data model (one region at the bottom of the 10% safe area, lines as
``<span>`` separated by ``<br/>``) written by its IMSC writer with media-time clock expressions
(``hh:mm:ss.mmm``), then what EBU-TT-D asks and ttconv does not write: ``ttp:timeBase="media"``,
``ebuttm:conformsToStandard``, styles defined once in ``<styling>`` and referenced by id
(centred white text on black), none inline, an ``xml:id`` on every ``<p>``, and the region
referenced from the ``<div>`` (EBU-TT-D's ``<body>`` takes no region). Text is escaped by the XML writer; characters XML
cannot hold (control characters an OCR may read) are dropped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as et
from collections.abc import Iterable
from fractions import Fraction

TT = "http://www.w3.org/ns/ttml"
TTP = "http://www.w3.org/ns/ttml#parameter"
TTS = "http://www.w3.org/ns/ttml#styling"
XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
EBUTTM = "urn:ebu:tt:metadata"
EBU_TT_D = "urn:ebu:tt:distribution:2018-04"
STYLES = {"paragraph": {"textAlign": "center"}, "text": {"color": "#ffffff", "backgroundColor": "#000000"}}
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _region(doc):
    from ttconv import model
    from ttconv import style_properties as styles

    pct = styles.LengthType.Units.pct
    region = model.Region("bottom", doc)
    region.set_style(styles.StyleProperties.Origin, styles.CoordinateType(x=styles.LengthType(10, pct),
                                                                          y=styles.LengthType(10, pct)))
    region.set_style(styles.StyleProperties.Extent, styles.ExtentType(width=styles.LengthType(80, pct),
                                                                      height=styles.LengthType(80, pct)))
    region.set_style(styles.StyleProperties.DisplayAlign, styles.DisplayAlignType.after)
    doc.put_region(region)
    return region


def _paragraph(doc, start: float, end: float, text: str):
    from ttconv import model

    p = model.P(doc)
    p.set_begin(Fraction(round(start * 1000), 1000))
    p.set_end(Fraction(round(end * 1000), 1000))
    for i, line in enumerate(text.split("\n")):
        if i:
            p.push_child(model.Br(doc))
        span = model.Span(doc)
        span.push_child(model.Text(doc, _NOT_XML.sub("", line)))
        p.push_child(span)
    return p


def ttml_document(cues: Iterable[tuple[float, float, str]], language: str = "en") -> str:
    """An EBU-TT-D document (UTF-8 text) of ``(start, end, text)`` cues, times in seconds, lines
    of a cue separated by newlines."""
    from ttconv import model
    from ttconv.imsc import writer
    from ttconv.imsc.config import IMSCWriterConfiguration, TimeExpressionSyntaxEnum

    doc = model.ContentDocument()
    doc.set_lang(language)
    region = _region(doc)
    body = model.Body(doc)
    body.set_region(region)
    doc.set_body(body)
    div = model.Div(doc)
    body.push_child(div)
    for start, end, text in cues:
        div.push_child(_paragraph(doc, start, end, text))
    tree = writer.from_model(doc, IMSCWriterConfiguration(time_format=TimeExpressionSyntaxEnum.clock_time))
    return _ebu_tt_d(tree.getroot())


def _ebu_tt_d(root: et.Element) -> str:
    """ttconv's IMSC document with EBU-TT-D's signalling and referenced styles, as text."""
    et.register_namespace("ttp", TTP)
    et.register_namespace("ebuttm", EBUTTM)
    root.set(f"{{{TTP}}}timeBase", "media")
    head = root.find(f"{{{TT}}}head")
    metadata = et.Element(f"{{{TT}}}metadata")
    document = et.SubElement(metadata, f"{{{EBUTTM}}}documentMetadata")
    et.SubElement(document, f"{{{EBUTTM}}}conformsToStandard").text = EBU_TT_D
    styling = et.Element(f"{{{TT}}}styling")
    for style_id, attributes in STYLES.items():
        et.SubElement(styling, f"{{{TT}}}style", {XML_ID: style_id, **{f"{{{TTS}}}{k}": v for k, v in attributes.items()}})
    head[:0] = [metadata, styling]
    body = root.find(f"{{{TT}}}body")
    if body is not None and next(body.iter(f"{{{TT}}}p"), None) is None:
        root.remove(body)  # EBU-TT-D: a div holds at least one p, a body one div; a document may have no body
        body = None
    region = body.attrib.pop("region", None) if body is not None else None  # EBU-TT-D: on div or p only
    for div in root.iter(f"{{{TT}}}div"):
        if region is not None:
            div.set("region", region)
    for number, p in enumerate(root.iter(f"{{{TT}}}p"), 1):
        p.set(XML_ID, f"sub{number}")  # EBU-TT-D: every subtitle has an id
        p.set("style", "paragraph")
    for span in root.iter(f"{{{TT}}}span"):
        span.set("style", "text")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + et.tostring(root, encoding="unicode") + "\n"
