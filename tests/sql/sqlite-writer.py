#!/usr/bin/env python3
"""A live SQLite writer for the SQL tests (tests/sql/sqlite-e2e.sh, tests/sql.rs).

usage: sqlite-writer.py PATH MODE SECONDS [BULK_MIB [PAUSE]]

Each transaction moves an amount between two accounts, adds a ledger row and
sets meta.txn to the number of committed transactions, so a consistent copy
has count(ledger) = txn and a constant sum of balances. MODE is the journal
mode (WAL, DELETE, ...); BULK_MIB MiB of random blobs are added first; PAUSE
seconds are slept after each commit. It stops after SECONDS, or as soon as
PATH.stop exists.
"""
import os, random, sqlite3, sys, time
path, mode, stop_after = sys.argv[1], sys.argv[2], float(sys.argv[3])
bulk_mib = int(sys.argv[4]) if len(sys.argv) > 4 else 0
pause = float(sys.argv[5]) if len(sys.argv) > 5 else 0
db = sqlite3.connect(path, isolation_level=None, timeout=30)
db.execute(f"PRAGMA journal_mode={mode}")
db.execute("PRAGMA wal_autocheckpoint=200")  # checkpoints and restarts every few dozen transactions
db.execute("CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
db.execute("CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY, src INT, dst INT, amount INT, pad BLOB)")
db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER)")
if db.execute("SELECT count(*) FROM accounts").fetchone()[0] == 0:
    db.execute("BEGIN")
    db.executemany("INSERT INTO accounts VALUES (?, 1000000)", [(i,) for i in range(1, 101)])
    db.execute("INSERT INTO meta VALUES ('txn', 0)")
    db.execute("COMMIT")
db.execute("CREATE TABLE IF NOT EXISTS bulk (id INTEGER PRIMARY KEY, data BLOB)")
if bulk_mib:
    db.execute("BEGIN")
    db.executemany("INSERT INTO bulk (data) VALUES (randomblob(1048576))", [()] * bulk_mib)
    db.execute("COMMIT")
rnd = random.Random(1)
end = time.time() + stop_after
stop = path + ".stop"
n = db.execute("SELECT v FROM meta WHERE k = 'txn'").fetchone()[0]
while time.time() < end and not os.path.exists(stop):
    a, b = rnd.sample(range(1, 101), 2)
    x = rnd.randint(1, 100)
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (x, a))
    db.execute("INSERT INTO ledger (src, dst, amount, pad) VALUES (?, ?, ?, randomblob(?))", (a, b, x, rnd.randint(10, 400)))
    db.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (x, b))
    n += 1
    db.execute("UPDATE meta SET v = ? WHERE k = 'txn'", (n,))
    db.execute("COMMIT")
    if pause:
        time.sleep(pause)
