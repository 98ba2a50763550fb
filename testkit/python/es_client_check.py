"""Drive the testkit Elasticsearch emulator with the official Python client.

Usage: es_client_check.py URL USER PASSWORD

Indexes documents (single index call and helpers.bulk), provokes a per-item
mapping error, pages with search_after, pages again inside a point in time
(if this client version has open_point_in_time), and prints one JSON line
with what it observed. Exits 3 with a message naming the pip command when
the client is not installed; exits 1 when an expectation fails.
"""

import json
import sys

try:
    import elasticsearch
    from elasticsearch import Elasticsearch, helpers
except ImportError:
    print(
        "MISSING: the official 'elasticsearch' Python client is not installed; "
        "run: python3 -m pip install -r testkit/python/requirements-es.txt",
        file=sys.stderr,
    )
    sys.exit(3)


def expect(condition, message):
    if not condition:
        print("FAILED: " + message, file=sys.stderr)
        sys.exit(1)


def page(es, size, pit=None, index=None):
    """Pages with search_after; returns the ids in order."""
    seen = []
    after = None
    while True:
        kwargs = {"size": size, "sort": [{"@timestamp": "asc"}, {"n": "asc"}]}
        if pit is not None:
            kwargs["pit"] = {"id": pit, "keep_alive": "1m"}
        else:
            kwargs["index"] = index
        if after is not None:
            kwargs["search_after"] = after
        response = es.search(**kwargs)
        if pit is not None:
            pit = response["pit_id"]
        hits = response["hits"]["hits"]
        if not hits:
            return seen, pit
        for hit in hits:
            expect(isinstance(hit["sort"][0], int), "date sort values are epoch-millisecond integers: %r" % (hit["sort"],))
            seen.append(hit["_id"])
        after = hits[-1]["sort"]


def main():
    url, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
    es = Elasticsearch(url, basic_auth=(user, password), request_timeout=10)
    report = {"client_version": elasticsearch.__versionstr__}

    info = es.info()
    report["server_version"] = info["version"]["number"]

    es.indices.create(
        index="py-logs",
        mappings={"properties": {"@timestamp": {"type": "date"}, "n": {"type": "long"}, "host": {"type": "keyword"}}},
    )
    report["index_exists"] = bool(es.indices.exists(index="py-logs"))

    single = es.index(index="py-logs", id="first", document={"@timestamp": "2026-01-01T00:00:00Z", "n": 0, "host": "a"}, refresh="wait_for")
    report["single_result"] = single["result"]

    actions = [
        {
            "_index": "py-logs",
            "_id": "doc-%03d" % position,
            "_source": {"@timestamp": "2026-01-01T00:00:%02dZ" % (position // 4), "n": position + 1, "host": "h%d" % (position % 3)},
        }
        for position in range(60)
    ]
    succeeded, errors = helpers.bulk(es, actions, refresh="wait_for")
    report["bulk_succeeded"] = succeeded
    report["bulk_errors"] = len(errors)

    bad = [{"_index": "py-logs", "_id": "bad", "_source": {"@timestamp": "2026-01-01T00:01:00Z", "n": "not-a-number"}}]
    bad_succeeded, bad_errors = helpers.bulk(es, bad, raise_on_error=False)
    report["bad_succeeded"] = bad_succeeded
    report["bad_error_type"] = bad_errors[0]["index"]["error"]["type"] if bad_errors else None
    report["bad_status"] = bad_errors[0]["index"]["status"] if bad_errors else None

    report["count"] = es.count(index="py-logs")["count"]
    filtered = es.search(index="py-logs", query={"bool": {"filter": [{"term": {"host": "h1"}}, {"range": {"@timestamp": {"gte": "2026-01-01T00:00:05Z"}}}]}}, size=100)
    report["filtered_total"] = filtered["hits"]["total"]["value"]

    ids, _ = page(es, 7, index="py-logs")
    report["search_after_ids"] = len(ids)
    report["search_after_unique"] = len(set(ids))
    report["search_after_ordered"] = ids == ["first"] + ["doc-%03d" % position for position in range(60)]

    report["pit_supported"] = hasattr(es, "open_point_in_time")
    if report["pit_supported"]:
        pit = es.open_point_in_time(index="py-logs", keep_alive="1m")["id"]
        es.index(index="py-logs", id="late", document={"@timestamp": "2026-01-01T00:00:00Z", "n": 999}, refresh="true")
        pit_ids, last_pit = page(es, 9, pit=pit)
        report["pit_ids"] = len(pit_ids)
        report["pit_saw_late"] = "late" in pit_ids
        closed = es.close_point_in_time(id=last_pit)
        report["pit_closed"] = closed["succeeded"]
        try:
            es.search(pit={"id": last_pit, "keep_alive": "1m"}, size=1)
            report["closed_pit_error"] = None
        except elasticsearch.NotFoundError as error:
            report["closed_pit_error"] = error.meta.status

    try:
        es.search(index="missing-index")
        report["missing_index_error"] = None
    except elasticsearch.NotFoundError as error:
        report["missing_index_error"] = error.body["error"]["type"]

    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
