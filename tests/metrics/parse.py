#!/usr/bin/env python3
"""Reads a Prometheus text exposition on stdin and prints its samples as
JSON lines [name, labels, value], parsed by prometheus_client (the reference
Python client). Exits 1 on anything Prometheus would refuse: a parse error,
a series (name + labels) given twice, or a family whose samples are split."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
seen_series = set()
seen_families = set()
try:
    for family in text_string_to_metric_families(text):
        if family.name in seen_families:
            sys.exit(f"family {family.name} appears twice")
        seen_families.add(family.name)
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in seen_series:
                sys.exit(f"duplicate series {key}")
            seen_series.add(key)
            print(json.dumps([s.name, s.labels, s.value]))
except ValueError as e:
    sys.exit(f"parse error: {e}")
