"""The shared driver scenarios, as a pymongo application runs them (see test/other-drivers.test.ts).

usage: pymongo_scenarios.py URI DB SCENARIO...   (crud, cursors, bulk, sessions, transactions, stepdown, default_writes)
Prints one JSON line per scenario; exits 1 at the first failure, with the reason on stderr.
"""
import json
import sys
import threading

from pymongo import MongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError


def in_threads(target, args_list):
    """Runs target(*args) on one thread each; raises with every failure once all are done."""
    failures = []

    def guarded(*args):
        try:
            target(*args)
        except Exception as e:  # collected, reported below
            failures.append(repr(e))

    threads = [threading.Thread(target=guarded, args=args) for args in args_list]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures


def crud(uri, db):
    with MongoClient(uri, maxPoolSize=3) as client:
        col = client[db]["people"]
        col.insert_many([{"_id": 1, "name": "ada"}, {"_id": 2, "name": "grace"}])
        col.update_one({"_id": 2}, {"$set": {"name": "hopper"}})
        assert list(col.find({}, sort=[("_id", 1)])) == [{"_id": 1, "name": "ada"}, {"_id": 2, "name": "hopper"}]
        try:
            col.insert_one({"_id": 1, "name": "again"})
            raise AssertionError("a duplicate _id was accepted")
        except DuplicateKeyError as e:
            assert e.code == 11000
        assert col.delete_many({}).deleted_count == 2
        nums = client[db]["nums"]
        nums.insert_many([{"v": i} for i in range(30)])
        total = list(nums.aggregate([{"$group": {"_id": None, "s": {"$sum": "$v"}}}]))[0]["s"]
        assert total == 435, total
        big = "b" * (15 * 1024 * 1024)
        client[db]["big"].insert_one({"_id": "big", "big": big})
        assert len(client[db]["big"].find_one({"_id": "big"})["big"]) == len(big)
    return {}


def cursors(uri, db, clients=10):
    with MongoClient(uri) as seed:
        seed[db]["cursors"].insert_many([{"_id": i} for i in range(200)])
    def drain(client):
        ids = [d["_id"] for d in client[db]["cursors"].find({}, batch_size=7, sort=[("_id", 1)])]
        assert ids == list(range(200)), ids[:10]

    all_clients = [MongoClient(uri, maxPoolSize=2) for _ in range(clients)]
    try:
        in_threads(drain, [(c,) for c in all_clients for _ in range(2)])
    finally:
        for c in all_clients:
            c.close()
    return {"cursors": clients * 2}


def bulk(uri, db):
    with MongoClient(uri) as client:
        col = client[db]["bulk"]
        col.insert_one({"_id": 3})
        try:
            col.insert_many([{"_id": 1}, {"_id": 2}, {"_id": 3}, {"_id": 4}], ordered=True)
            raise AssertionError("the duplicate was accepted")
        except BulkWriteError as e:
            d = e.details
            assert d["nInserted"] == 2, d
            assert [(w["index"], w["code"]) for w in d["writeErrors"]] == [(2, 11000)], d
        try:
            col.insert_many([{"_id": 3}, {"_id": 5}, {"_id": 1}], ordered=False)
            raise AssertionError("the duplicates were accepted")
        except BulkWriteError as e:
            d = e.details
            assert d["nInserted"] == 1, d
            assert sorted(w["index"] for w in d["writeErrors"]) == [0, 2], d
    return {}


def sessions(uri, db):
    with MongoClient(uri, maxPoolSize=2) as client:
        col = client[db]["sessions"]
        with client.start_session(causal_consistency=True) as s:
            col.insert_one({"_id": "s1"}, session=s)
            assert col.find_one({"_id": "s1"}, session=s) == {"_id": "s1"}
            assert s.session_id is not None
        for _ in range(3):
            with client.start_session() as s:
                assert col.count_documents({}, session=s) == 1
    return {}


def transactions(uri, db, clients=6, per_client=3):
    """Every statement of each transaction must reach one router (the test reads the fleet's log)."""
    all_clients = [MongoClient(uri, maxPoolSize=3) for _ in range(clients)]

    def run(ci, client):
        col = client[db]["t"]
        for k in range(per_client):
            with client.start_session() as s:
                with s.start_transaction():
                    col.insert_one({"ci": ci, "k": k, "step": 1}, session=s)
                    col.insert_one({"ci": ci, "k": k, "step": 2}, session=s)
                    col.find_one({"ci": ci, "k": k}, session=s)
                    col.update_one({"ci": ci, "k": k, "step": 1}, {"$set": {"done": True}}, session=s)

    try:
        in_threads(run, list(enumerate(all_clients)))
    finally:
        for c in all_clients:
            c.close()
    return {"transactions": clients * per_client}


def stepdown(uri, db, writers=4, per_writer=30):
    """Retryable inserts while the primary steps down: asks the test (stdout/stdin) to step it down."""
    with MongoClient(uri, retryWrites=True) as client:
        col = client[db]["failover"]

        def write(w):
            for i in range(per_writer):
                col.insert_one({"_id": f"{w}-{i}"})
                if w == 0 and i == per_writer // 4:
                    print(json.dumps({"stepdown": "now"}), flush=True)
                    sys.stdin.readline()

        in_threads(write, [(w,) for w in range(writers)])
        stored = col.count_documents({})
        assert stored == writers * per_writer, stored
    return {"stored": stored}


def default_writes(uri, db):
    """Each default-option write and a transaction attempt; the outcomes, to compare with a direct connection's."""
    from pymongo import InsertOne, UpdateOne

    outcomes = {}
    with MongoClient(uri, serverSelectionTimeoutMS=5000) as client:
        col = client[db]["w"]

        def attempt(name, op):
            try:
                op()
                outcomes[name] = "ok"
            except Exception as e:  # the outcome is the result
                outcomes[name] = f"{type(e).__name__} {getattr(e, 'code', None)} {e}".split(", full error")[0]

        def transaction():
            with client.start_session() as s:
                with s.start_transaction():
                    col.insert_one({"_id": "txn"}, session=s)

        attempt("insert_one", lambda: col.insert_one({"_id": 1}))
        attempt("insert_many", lambda: col.insert_many([{"_id": 2}, {"_id": 3}]))
        attempt("update_one", lambda: col.update_one({"_id": 1}, {"$set": {"v": 1}}))
        attempt("find_one_and_update", lambda: col.find_one_and_update({"_id": 2}, {"$set": {"v": 2}}))
        attempt("delete_one", lambda: col.delete_one({"_id": 3}))
        attempt("bulk_write", lambda: col.bulk_write([InsertOne({"_id": 4}), UpdateOne({"_id": 4}, {"$set": {"v": 4}})]))
        attempt("transaction", transaction)
    return {"outcomes": outcomes}


SCENARIOS = {"default_writes": default_writes, "crud": crud, "cursors": cursors, "bulk": bulk, "sessions": sessions, "transactions": transactions, "stepdown": stepdown}


def main():
    uri, db, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    for name in names:
        try:
            result = SCENARIOS[name](uri, f"{db}_{name}")
        except Exception as e:
            print(f"pymongo scenario {name} failed: {e!r}", file=sys.stderr)
            sys.exit(1)
        print(json.dumps({"driver": "pymongo", "scenario": name, "ok": True, **result}), flush=True)


if __name__ == "__main__":
    main()
