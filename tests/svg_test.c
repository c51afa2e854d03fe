/* svg_test.c — the report's SVG writer (stages/report/svg.h): the Pareto
 * frontier keeps exactly the undominated points, text is escaped,
 * non-finite values are left out, and the same data gives the same bytes. */
#include "stages/report/svg.h"
#include "test.h"

#include <math.h>

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p++) n++;
    return n;
}

/* Number of points of the dashed (frontier) polyline. */
static int frontier_points(const char *svg)
{
    const char *p = strstr(svg, "stroke-dasharray=\"4 3\" points=\"");
    if (!p) return -1;
    p += strlen("stroke-dasharray=\"4 3\" points=\"");
    if (*p == '"') return 0;
    int n = 1;
    for (; *p && *p != '"'; p++) n += *p == ' ';
    return n;
}

int main(void)
{
    /* A and B are the frontier; C (bigger and worse than A) and D (bigger
     * and worse than B) are dominated; E has no finite accuracy */
    svg_point pts[] = {
        { "A", 100, 0.5, 0 }, { "B", 1000, 0.9, 1 }, { "C", 500, 0.4, 0 },
        { "D", 2000, 0.8, 2 }, { "E", 300, NAN, 0 },
    };
    flow_buf a, b;
    buf_init(&a);
    buf_init(&b);
    svg_pareto(&a, 600, 300, "t", "bytes", "acc", pts, 5);
    svg_pareto(&b, 600, 300, "t", "bytes", "acc", pts, 5);
    CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    CHECK_MSG(frontier_points(a.data) == 3, "frontier has %d points (A, the step, B)", frontier_points(a.data));
    CHECK_MSG(count(a.data, "<circle") == 4 + 2, "%d circles: 4 finite points + 2 legend keys", count(a.data, "<circle"));
    /* dropping a dominated point leaves the frontier as it was */
    b.len = 0;
    svg_point three[] = { pts[0], pts[1], pts[3] };
    svg_pareto(&b, 600, 300, "t", "bytes", "acc", three, 3);
    CHECK(frontier_points(b.data) == 3);
    /* the best point first in x: a frontier of one point */
    b.len = 0;
    svg_point one[] = { { "S", 10, 0.95, 0 }, pts[1], pts[3] };
    svg_pareto(&b, 600, 300, "t", "bytes", "acc", one, 3);
    CHECK(frontier_points(b.data) == 1);

    /* escaping */
    b.len = 0;
    char *cats[] = { "a<b&c" };
    char *series[] = { "m\"1" };
    double v[] = { 0.5 };
    svg_bars(&b, 500, "F1 <per class>", cats, 1, series, 1, v, 1.0);
    CHECK_CONTAINS(b.data, "a&lt;b&amp;c");
    CHECK_CONTAINS(b.data, "F1 &lt;per class&gt;");
    CHECK_CONTAINS(b.data, "m&quot;1: 0.5000");
    CHECK(!strstr(b.data, "a<b"));

    /* line chart: a NaN point is skipped, not drawn at a made-up place */
    b.len = 0;
    double x[] = { 1, 2, 3, 4 }, y[] = { 1.0, NAN, 0.5, 0.25 };
    svg_series s = { "loss", 4, x, y };
    svg_line_chart(&b, 600, 300, "loss", "step", "loss", &s, 1);
    const char *pl = strstr(b.data, "<polyline");
    CHECK(pl != NULL);
    const char *pp = pl ? strstr(pl, "points=\"") : NULL;
    int n = 0;
    for (const char *q = pp ? pp + 8 : ""; *q && *q != '"'; q++) n += *q == ',';
    CHECK_MSG(n == 3, "%d points drawn of 3 finite ones", n);
    CHECK(!strstr(b.data, "nan") && !strstr(b.data, "inf"));

    /* heat map: one cell per pair, shaded by the row share */
    b.len = 0;
    char *labels[] = { "x", "y" };
    int64_t cm[] = { 3, 1, 0, 4 };
    svg_heatmap(&b, "cm", labels, 2, cm);
    CHECK_MSG(count(b.data, "<rect") == 1 + 4, "%d rects", count(b.data, "<rect"));
    CHECK_CONTAINS(b.data, "fill=\"#08306b\"");       /* the 4/4 cell: darkest */
    CHECK_CONTAINS(b.data, "fill=\"#ffffff\" stroke");  /* the 0 cell: white */
    buf_release(&a);
    buf_release(&b);
    return test_summary("svg_test");
}
