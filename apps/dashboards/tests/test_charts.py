import xml.etree.ElementTree as ET

import pytest
from django.utils.safestring import SafeString

from apps.dashboards.charts import PALETTE, Bar, Series, bar_chart, compact, line_chart, stacked_columns

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output, not untrusted input


def find_all(root: ET.Element, tag: str, css_class: str | None = None) -> list[ET.Element]:
    found = root.iter(f"{SVG}{tag}")
    return [e for e in found if css_class is None or css_class in e.get("class", "").split()]


def tooltips(root: ET.Element) -> list[str]:
    return [title.text or "" for title in find_all(root, "title")]


def legend_names(root: ET.Element) -> list[str]:
    legend = next(g for g in find_all(root, "g", "legend"))
    return ["".join(text.itertext()) for text in find_all(legend, "text")]


def links(root: ET.Element) -> list[str]:
    return [a.get("href") for a in find_all(root, "a")]


def tick_labels(root: ET.Element) -> list[str]:
    return [text.text for text in find_all(root, "text", "tick")]


def line_paths(root: ET.Element) -> list[str]:
    return [path.get("d") for path in find_all(root, "path", "line")]


DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri"]


def a_line_chart(**kwargs) -> ET.Element:
    series = [
        Series("UPS", [1, 2, 3, 4, 5], hrefs=["/ups/mon", None, None, None, "/ups/fri"]),
        Series("DHL", [2, None, 4, 5, 6]),
    ]
    return parse(line_chart(DAYS, series, title="Transit time", **kwargs))


@pytest.mark.parametrize(
    "svg",
    [
        line_chart(DAYS, [Series("UPS", [1, 2, 3, 4, 5])], title="Transit time"),
        bar_chart([Bar("UPS", 3)], title="Transit time"),
        stacked_columns(DAYS, [Series("UPS", [1, 2, 3, 4, 5])], title="Transit time"),
        line_chart([], [], title="Transit time"),
    ],
    ids=["line", "bar", "stacked", "empty"],
)
def test_every_chart_is_a_safe_labelled_responsive_image(svg):
    root = parse(svg)

    assert isinstance(svg, SafeString)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("width") == "100%"
    assert root.get("viewBox").startswith("0 0 640 ")
    assert root.get("preserveAspectRatio")
    title_id, desc_id = root.get("aria-labelledby").split()
    assert root.find(f"{SVG}title").get("id") == title_id
    assert root.find(f"{SVG}title").text == "Transit time"
    assert root.find(f"{SVG}desc").get("id") == desc_id
    assert root.find(f"{SVG}desc").text


def test_two_charts_on_one_page_have_their_own_ids():
    first = parse(bar_chart([Bar("UPS", 3)], title="A"))
    second = parse(bar_chart([Bar("UPS", 3)], title="A"))

    assert first.get("aria-labelledby") != second.get("aria-labelledby")


def test_a_line_chart_draws_a_marker_with_a_tooltip_per_value_and_names_each_series():
    root = a_line_chart()

    assert legend_names(root) == ["UPS", "DHL"]
    points = find_all(root, "path", "point")
    assert len(points) == 9  # ten values, one missing
    assert "UPS · Mon: 1" in tooltips(root)
    assert "DHL · Fri: 6" in tooltips(root)


def test_each_series_differs_by_more_than_colour():
    root = a_line_chart()

    lines = find_all(root, "path", "line")
    assert [line.get("stroke") for line in lines] == list(PALETTE[:2])
    assert len({line.get("stroke-dasharray") for line in lines}) == 2
    shapes = {marker.get("d") for marker in find_all(root, "path", "point")}
    assert len(shapes) == 2
    # The legend shows the same dash and marker as the series it names.
    swatches = find_all(root, "line")[-2:]
    assert [s.get("stroke-dasharray") for s in swatches] == [line.get("stroke-dasharray") for line in lines]
    assert {marker.get("d") for marker in find_all(root, "path", "swatch")} == shapes


def test_a_missing_value_breaks_the_line():
    root = a_line_chart()

    ups, dhl = line_paths(root)
    assert ups.count("M") == 1
    assert dhl.count("M") == 2  # Mon, then Wed to Fri


def test_an_isolated_value_is_still_shown_as_a_marker():
    root = parse(line_chart(["a", "b", "c"], [Series("UPS", [None, 7, None])], title="t"))

    assert line_paths(root) == [line_paths(root)[0]]
    assert line_paths(root)[0].count("L") == 0
    assert len(find_all(root, "path", "point")) == 1


def test_points_with_an_href_link_to_their_drill_down():
    root = a_line_chart()

    assert links(root) == ["/ups/mon", "/ups/fri"]
    first_link = find_all(root, "a")[0]
    assert find_all(first_link, "path", "point")


def test_series_of_the_wrong_length_are_refused():
    with pytest.raises(ValueError, match="one value"):
        line_chart(DAYS, [Series("UPS", [1, 2])], title="t")


def test_values_are_formatted_by_the_caller():
    root = a_line_chart(format_value=lambda v: f"{v:g} h")

    assert "UPS · Tue: 2 h" in tooltips(root)
    assert tick_labels(root) == ["0 h", "2 h", "4 h", "6 h", "8 h", "10 h"]


@pytest.mark.parametrize(
    ("largest", "ticks"),
    [
        (0.3, ["0", "0.1", "0.2", "0.3", "0.4", "0.5"]),
        (0.9, ["0", "0.2", "0.4", "0.6", "0.8", "1"]),
        (1, ["0", "0.2", "0.4", "0.6", "0.8", "1"]),
        (1.2, ["0", "0.5", "1", "1.5", "2"]),
        (2.2, ["0", "0.5", "1", "1.5", "2", "2.5"]),
        (4, ["0", "1", "2", "3", "4", "5"]),
        (7, ["0", "2", "4", "6", "8", "10"]),
        (1234, ["0", "500", "1000", "1500", "2000"]),
        (25_000, ["0", "5000", "10000", "15000", "20000", "25000"]),
        (0, ["0", "0.2", "0.4", "0.6", "0.8", "1"]),
    ],
)
def test_the_axis_ends_at_a_round_number_with_four_or_five_gridlines(largest, ticks):
    root = parse(line_chart(["a", "b"], [Series("s", [largest / 2, largest])], title="t", format_value=str_g))

    assert tick_labels(root) == ticks


def str_g(value: float) -> str:
    return f"{value:g}"


def test_long_labels_are_cut_with_an_ellipsis_and_keep_their_full_text_as_a_tooltip():
    name = "Consolidated Freight Forwarding International Ltd"
    root = parse(bar_chart([Bar(name, 3), Bar("UPS", 4)], title="t"))

    label = next(text for text in find_all(root, "text") if text.find(f"{SVG}title") is not None)
    assert label.find(f"{SVG}title").text == name
    shown = "".join(label.itertext()).removeprefix(name)
    assert shown.endswith("…")
    assert len(shown) < len(name)


def test_text_is_escaped():
    evil = '<script>alert("x")</script>'
    svg = line_chart([evil, "b"], [Series(evil, [1, 2], hrefs=['/x?a=1&b="2"', None])], title=evil)

    assert "<script>" not in svg
    root = parse(svg)
    assert root.find(f"{SVG}title").text == evil
    assert evil in legend_names(root)
    assert links(root) == ['/x?a=1&b="2"']
    assert "<script>" not in bar_chart([Bar(evil, 1, note=evil)], title=evil)
    assert "<script>" not in stacked_columns([evil], [Series(evil, [1])], title=evil)


def test_a_bar_chart_has_one_labelled_bar_per_row_and_grows_with_the_rows():
    few = parse(bar_chart([Bar("UPS", 3600), Bar("DHL", 1800)], title="t"))
    many = parse(bar_chart([Bar(f"P{n}", n) for n in range(1, 11)], title="t"))

    assert len(find_all(few, "g", "bar")) == 2
    assert len(find_all(many, "g", "bar")) == 10
    assert float(many.get("viewBox").split()[3]) > float(few.get("viewBox").split()[3])
    assert [r.get("fill") for r in find_all(few, "rect")] == [PALETTE[0]] * 2
    assert [t.text for t in find_all(few, "text", "value")] == ["3.6k", "1.8k"]


def test_a_bar_tooltip_gives_label_value_and_note_and_bars_link_to_their_drill_down():
    root = parse(bar_chart([Bar("UPS", 3600, href="/partners/ups/", note="n = 120"), Bar("DHL", 10)], title="t"))

    assert "UPS: 3.6k · n = 120" in tooltips(root)
    assert links(root) == ["/partners/ups/"]
    assert find_all(find_all(root, "a")[0], "rect")


def test_a_bar_without_a_value_says_no_data():
    root = parse(bar_chart([Bar("UPS", 3), Bar("DHL", None)], title="t"))

    rows = find_all(root, "g", "bar")
    assert len(rows) == 2
    assert not find_all(rows[1], "rect")
    assert [t.text for t in find_all(rows[1], "text", "no-data")] == ["no data"]
    assert "DHL: no data" in tooltips(root)


def test_stacked_columns_stack_each_series_with_its_own_hatching_and_show_totals():
    buckets = ["< 1 h", "1–4 h", "4–24 h", "> 1 d"]
    series = [
        Series("Finance", [3, 1, 0, 2], hrefs=["/cases/?queue=finance&age=0", None, None, None]),
        Series("Customer service", [1, None, 2, 1]),
        Series("Integration", [None, 2, 1, 1]),
    ]
    root = parse(stacked_columns(buckets, series, title="Open cases by age"))

    assert legend_names(root) == ["Finance", "Customer service", "Integration"]
    assert len(find_all(root, "g", "segment")) == 9  # twelve values, two missing, one zero
    assert "1–4 h · Integration: 2" in tooltips(root)
    assert [t.text for t in find_all(root, "text", "total")] == ["4", "3", "3", "4"]
    assert links(root) == ["/cases/?queue=finance&age=0"]
    patterns = find_all(root, "pattern")
    assert len(patterns) == 2  # the first series is solid
    hatch_fills = {r.get("fill") for r in find_all(root, "rect") if r.get("fill", "").startswith("url(")}
    assert hatch_fills == {f"url(#{p.get('id')})" for p in patterns}


def test_a_column_without_any_value_says_no_data():
    root = parse(stacked_columns(["a", "b"], [Series("x", [1, None]), Series("y", [2, None])], title="t"))

    assert [t.text for t in find_all(root, "text", "no-data")] == ["no data"]
    assert "b: no data" in root.find(f"{SVG}desc").text


def test_crowded_axis_labels_are_thinned_but_every_point_keeps_its_tooltip():
    labels = [f"2026-11-{day:02d}" for day in range(1, 31)]
    root = parse(line_chart(labels, [Series("Lag", [float(day) for day in range(30)])], title="t"))

    axis_labels = [t for t in find_all(root, "text") if "".join(t.itertext()).startswith("2026")]
    assert 3 <= len(axis_labels) < 30
    assert len(find_all(root, "path", "point")) == 30


@pytest.mark.parametrize(
    "render",
    [
        lambda: line_chart([], [], title="Lag"),
        lambda: line_chart(DAYS, [], title="Lag"),
        lambda: line_chart(DAYS, [Series("UPS", [None] * 5)], title="Lag"),
        lambda: stacked_columns(DAYS, [Series("UPS", [None] * 5)], title="Lag"),
        lambda: bar_chart([], title="Lag"),
        lambda: bar_chart([Bar("UPS", None)], title="Lag"),
    ],
)
def test_no_data_gives_a_small_chart_that_says_so(render):
    root = parse(render())

    assert root.get("role") == "img"
    assert root.find(f"{SVG}title").text == "Lag"
    assert [t.text for t in find_all(root, "text")] == ["No data for this period"]
    assert float(root.get("viewBox").split()[3]) < 100


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (0.5, "0.5"),
        (0.05, "0.05"),
        (12, "12"),
        (12.34, "12.3"),
        (999, "999"),
        (1000, "1k"),
        (1234, "1.2k"),
        (12_345, "12.3k"),
        (123_456, "123k"),
        (2_500_000, "2.5M"),
        (3e9, "3B"),
        (-1500, "-1.5k"),
    ],
)
def test_compact_numbers(value, text):
    assert compact(value) == text


def test_the_axis_makes_room_for_long_tick_labels():
    root = parse(line_chart(["a", "b"], [Series("s", [1e6, 2e6])], title="t", format_value=lambda v: f"{v:,.2f} EUR"))

    for tick in find_all(root, "text", "tick"):
        assert float(tick.get("x")) - len(tick.text) * 6.8 >= 0
