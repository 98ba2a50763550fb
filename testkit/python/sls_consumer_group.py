#!/usr/bin/env python3
"""Fidelity check: drive the SLS emulator with the official
aliyun-log-python-sdk (version pinned in requirements.txt).

It first makes direct LogClient calls (ListShards, GetCursor, PullLogs with
and without lz4, GetCursorTime), then runs two ConsumerWorker consumers in one
consumer group: consumer A starts alone and must be given every shard;
consumer B joins and the server must move half of them to B through the
transfer handshake. Both read until every expected log has been seen, then
shut down (committing checkpoints), and the script checks that GetCheckPoint
reports the end cursor of every shard.

Every log read is written as one JSON line to --dump (shard, topic, source,
tags, time, time_ns, contents) so the Rust test can compare them with what
the emulator preloaded. The last stdout line is a JSON summary. Exit status
3 means the SDK is not installed.
"""

import argparse
import json
import logging
import sys
import threading
import time
import urllib.request

try:
    import aliyun.log.util as sls_util
    from aliyun.log import LogClient
    from aliyun.log.consumer import ConsumerProcessorBase, ConsumerWorker, CursorPosition, LogHubConfig
except ImportError as error:
    print("aliyun-log-python-sdk is not installed ({0}); run: python3 -m pip install -r testkit/python/requirements.txt".format(error),
          file=sys.stderr)
    sys.exit(3)

# The SDK only addresses a bare dotted quad without the project prefix; with a
# port it would resolve "project.127.0.0.1" (reference section 7). Patch the
# check before any client is built: ConsumerWorker talks to the server in its
# constructor.
sls_util.Util.is_row_ip = staticmethod(lambda endpoint: True)

RECORDS = []
RECORDS_LOCK = threading.Lock()


class Recorder(ConsumerProcessorBase):
    def process(self, log_group_list, check_point_tracker):
        rows = []
        for group in log_group_list.LogGroups:
            tags = [[tag.Key, tag.Value] for tag in group.LogTags]
            for log in group.Logs:
                rows.append({
                    "shard": self.shard_id,
                    "topic": group.Topic,
                    "source": group.Source,
                    "tags": tags,
                    "time": log.Time,
                    "time_ns": log.Time_ns,
                    "contents": [[content.Key, content.Value] for content in log.Contents],
                })
        with RECORDS_LOCK:
            RECORDS.extend(rows)
        self.save_checkpoint(check_point_tracker)


def read_count():
    with RECORDS_LOCK:
        return len(RECORDS)


def emulator_stats(endpoint):
    with urllib.request.urlopen("http://{0}/_testkit/stats".format(endpoint), timeout=10) as response:
        return json.loads(response.read())


def held_shards(endpoint, logstore, group):
    """consumer name -> shards it holds, from the emulator's control endpoint."""
    for info in emulator_stats(endpoint)["consumer_groups"]:
        if info["logstore"] == logstore and info["name"] == group:
            return {consumer["name"]: consumer["held_shards"] for consumer in info["consumers"]}
    return {}


def wait_for(description, condition, deadline):
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    print("timed out waiting for: " + description, file=sys.stderr)
    return False


def direct_client_checks(args, client, shard_count):
    """Plain LogClient calls; answers a dict of observations."""
    shards = client.list_shards(args.project, args.logstore).get_shards_info()
    observed = {"list_shards": len(shards), "pulled_groups_lz4": 0, "pulled_groups_plain": 0, "end_of_shard_empty": True}
    for shard in shards:
        shard_id = shard["shardID"]
        begin = client.get_cursor(args.project, args.logstore, shard_id, "begin").get_cursor()
        end = client.get_cursor(args.project, args.logstore, shard_id, "end").get_cursor()
        compressed = client.pull_logs(args.project, args.logstore, shard_id, begin, count=1000)
        plain = client.pull_logs(args.project, args.logstore, shard_id, begin, count=1000, compress=False)
        observed["pulled_groups_lz4"] += compressed.get_loggroup_count()
        observed["pulled_groups_plain"] += plain.get_loggroup_count()
        if compressed.get_next_cursor() != end:
            observed["end_of_shard_empty"] = False
        at_end = client.pull_logs(args.project, args.logstore, shard_id, end, count=1000)
        if at_end.get_loggroup_count() != 0 or at_end.get_next_cursor() != end:
            observed["end_of_shard_empty"] = False
        client.get_cursor_time(args.project, args.logstore, shard_id, begin)
    observed["list_shards_matches"] = observed["list_shards"] == shard_count
    return observed


def make_worker(args, consumer_name):
    config = LogHubConfig(args.endpoint, args.access_key_id, args.access_key_secret, args.project, args.logstore,
                          args.group, consumer_name, cursor_position=CursorPosition.BEGIN_CURSOR,
                          heartbeat_interval=1, data_fetch_interval=0.2)
    return ConsumerWorker(Recorder, consumer_option=config)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True, help="127.0.0.1:PORT")
    parser.add_argument("--project", required=True)
    parser.add_argument("--logstore", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--access-key-id", required=True)
    parser.add_argument("--access-key-secret", required=True)
    parser.add_argument("--shards", type=int, required=True)
    parser.add_argument("--expected-logs", type=int, required=True)
    parser.add_argument("--dump", required=True)
    parser.add_argument("--deadline-seconds", type=float, default=90)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    deadline = time.time() + args.deadline_seconds

    client = LogClient(args.endpoint, args.access_key_id, args.access_key_secret)
    summary = {"direct": direct_client_checks(args, client, args.shards)}

    first = make_worker(args, "consumer-a")
    first.start()
    summary["first_got_every_shard"] = wait_for(
        "consumer-a to hold every shard",
        lambda: len(held_shards(args.endpoint, args.logstore, args.group).get("consumer-a", [])) == args.shards, deadline)

    second = make_worker(args, "consumer-b")
    second.start()
    half = args.shards // 2

    def balanced():
        held = held_shards(args.endpoint, args.logstore, args.group)
        return len(held.get("consumer-a", [])) == args.shards - half and len(held.get("consumer-b", [])) == half

    summary["rebalanced"] = wait_for("the shards to be split between consumer-a and consumer-b", balanced, deadline)
    summary["held_after_rebalance"] = held_shards(args.endpoint, args.logstore, args.group)
    summary["read_everything"] = wait_for("every expected log to be read", lambda: read_count() >= args.expected_logs, deadline)

    for worker in (first, second):
        worker.shutdown()
    for worker in (first, second):
        worker.join(timeout=max(1.0, deadline - time.time()))

    checkpoints_at_end = True
    for shard in range(args.shards):
        end = client.get_cursor(args.project, args.logstore, shard, "end").get_cursor()
        entries = client.get_check_point(args.project, args.logstore, args.group, shard).get_consumer_group_check_points()
        if len(entries) != 1 or entries[0]["checkpoint"] != end:
            checkpoints_at_end = False
            print("shard {0}: checkpoint {1} is not the end cursor {2}".format(shard, entries, end), file=sys.stderr)
    summary["checkpoints_at_end"] = checkpoints_at_end

    with RECORDS_LOCK:
        records = list(RECORDS)
    with open(args.dump, "w") as dump:
        for record in records:
            dump.write(json.dumps(record) + "\n")
    summary["logs_read"] = len(records)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
