#!/usr/bin/env python3
"""Writes grids.geojson: boundaries for the grids and micro-grids of the demo
county (regions.csv). The county is fictional and so are its shapes: they are
GENERATED, not surveyed. A lattice of cells about 1 km across covers the
county; each cell corner is moved by a fixed pseudo-random amount (so shared
edges stay shared and the grids tile without gaps or overlaps); each grid is a
block of cells, and its outline is the union of its cells. Coordinates are
longitude, latitude in WGS 84 (EPSG:4326), rounded to 6 decimals (~0.1 m).

Run it again after changing the layout below: python3 make-grids.py > grids.geojson
The filings of the walkthrough and the tests (30.2741 N 120.1551 E in
东门社区第一网格1号微网格; 30.2 N 120.1 E in 青石村第一网格) lie inside.
"""
import hashlib
import json
import sys

ORIGIN_LON, ORIGIN_LAT, CELL = 119.95, 30.05, 0.01  # degrees
JITTER = 0.28  # of a cell, at most, each way

# code -> (name, [(first column, last column, first row, last row), ...])
# Columns count east from ORIGIN_LON, rows north from ORIGIN_LAT.
GRIDS = {
    # 城关街道 (urban): columns 16-23, rows 19-26
    "990101001001001": ("东门社区第一网格", [(20, 23, 22, 26)]),
    "99010100100100101": ("东门社区第一网格1号微网格", [(20, 21, 22, 26)]),
    "99010100100100102": ("东门社区第一网格2号微网格", [(22, 23, 22, 26)]),
    "990101001001002": ("东门社区第二网格", [(20, 23, 19, 21)]),
    "990101001002001": ("西门社区第一网格", [(16, 19, 23, 26)]),
    "990101001002002": ("西门社区第二网格", [(16, 19, 19, 22)]),
    # 青石镇: columns 8-17, rows 10-18
    "990101101001001": ("青石村第一网格", [(13, 17, 14, 18)]),
    "990101101001002": ("青石村第二网格", [(8, 12, 14, 18)]),
    "99010110100100201": ("青石村第二网格1号微网格", [(8, 10, 14, 18)]),
    "990101101002001": ("溪口村网格", [(8, 17, 10, 13)]),
    # 白云乡: columns 18-31, rows 6-18
    "990101201001001": ("白云村第一网格", [(18, 24, 12, 18)]),
    "990101201001002": ("白云村第二网格", [(25, 31, 12, 18)]),
    "990101201002001": ("石桥村网格", [(18, 31, 6, 11)]),
}


def corner(col, row):
    """The moved corner at lattice point (col, row), the same for every cell
    that shares it. Corners on the county's straight outer edge move too."""
    digest = hashlib.sha256(f"{col},{row}".encode()).digest()
    dx = (digest[0] / 255 * 2 - 1) * JITTER
    dy = (digest[1] / 255 * 2 - 1) * JITTER
    return (round(ORIGIN_LON + (col + dx) * CELL, 6), round(ORIGIN_LAT + (row + dy) * CELL, 6))


def outline(blocks):
    """The outer ring of a set of cells: every cell edge used once (the edges
    two cells share cancel), chained counter-clockwise."""
    cells = {(c, r) for (c0, c1, r0, r1) in blocks for c in range(c0, c1 + 1) for r in range(r0, r1 + 1)}
    edges = {}
    for (c, r) in cells:
        # Counter-clockwise around the cell, as directed edges.
        for a, b in (((c, r), (c + 1, r)), ((c + 1, r), (c + 1, r + 1)),
                     ((c + 1, r + 1), (c, r + 1)), ((c, r + 1), (c, r))):
            if (b, a) in edges:
                del edges[(b, a)]
            else:
                edges[(a, b)] = True
    following = {}
    for a, b in edges:
        if a in following:
            sys.exit(f"cells {sorted(cells)} touch at a corner only; make them one block")
        following[a] = b
    start = min(following)
    ring, point = [start], following[start]
    while point != start:
        ring.append(point)
        point = following[point]
    if len(ring) != len(edges):
        sys.exit(f"cells {sorted(cells)} are not one piece")
    ring.append(start)
    return [list(corner(c, r)) for (c, r) in ring]


def main():
    features = []
    for code, (name, blocks) in GRIDS.items():
        features.append({
            "type": "Feature",
            "properties": {"code": code, "name": name},
            "geometry": {"type": "Polygon", "coordinates": [outline(blocks)]},
        })
    collection = {
        "type": "FeatureCollection",
        "generator": "deploy/reference/make-grids.py (generated, not surveyed: the demo county is fictional)",
        "features": features,
    }
    json.dump(collection, sys.stdout, ensure_ascii=False, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
