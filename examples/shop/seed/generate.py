#!/usr/bin/env python3
"""Deterministic data for the example shop (seeded): an SQLite "app database" of customers, one CSV
drop of orders per day, and the product catalogue as JSON lines.

Usage: generate.py OUT_DIR [--customers N] [--days D] [--first-day K] [--seed S]
Writes OUT_DIR/app.db, OUT_DIR/orders/orders-YYYY-MM-DD.csv (days K..K+D-1 after 2026-10-01) and
OUT_DIR/products.jsonl, and prints what it produced (totals per day) as JSON, so tests can compare
them with SQL over the lake. The same seed and day always give the same rows, so a later call with
--first-day D --days 1 adds exactly the next day's drop.
"""
import argparse
import csv
import datetime as dt
import json
import os
import random
import sqlite3

COUNTRIES = ["KR", "US", "DE", "JP", "FR", "BR", "IN", "GB"]
CATEGORIES = ["books", "games", "garden", "kitchen", "music", "toys"]
START = dt.date(2026, 10, 1)


def customers(conn, n, seed):
    rnd = random.Random(seed)
    conn.execute("CREATE TABLE IF NOT EXISTS customers (customer_id INTEGER PRIMARY KEY, "
                 "name TEXT NOT NULL, country TEXT NOT NULL, signup_date TEXT NOT NULL, "
                 "updated_at TEXT NOT NULL)")
    for i in range(1, n + 1):
        signup = START - dt.timedelta(days=rnd.randint(0, 365))
        conn.execute("INSERT OR REPLACE INTO customers VALUES (?, ?, ?, ?, ?)",
                     (i, f"customer {i}", rnd.choice(COUNTRIES), signup.isoformat(),
                      f"{signup.isoformat()} 12:00:00"))
    conn.commit()


def products(path, seed):
    rnd = random.Random(seed * 31 + 1)
    out = []
    with open(path, "w") as f:
        for i in range(1, 101):
            p = {"product_id": i, "name": f"product {i}", "category": rnd.choice(CATEGORIES),
                 "price": round(rnd.uniform(2, 200), 2)}
            out.append(p)
            f.write(json.dumps(p) + "\n")
    return out


def orders_for_day(day_index, prods, n_customers, seed):
    rnd = random.Random(seed * 1000003 + day_index)
    day = START + dt.timedelta(days=day_index)
    rows = []
    for k in range(rnd.randint(20, 60)):
        p = rnd.choice(prods)
        q = rnd.randint(1, 4)
        cents = round(p["price"] * 100) * q
        ts = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=rnd.randint(0, 86399))
        rows.append([day_index * 1000 + k + 1, rnd.randint(1, n_customers), p["product_id"], q,
                     cents, ts.isoformat() + "Z"])
    return day, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--customers", type=int, default=500)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--first-day", type=int, default=0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    os.makedirs(os.path.join(args.out, "orders"), exist_ok=True)
    with sqlite3.connect(os.path.join(args.out, "app.db")) as conn:
        customers(conn, args.customers, args.seed)
    prods = products(os.path.join(args.out, "products.jsonl"), args.seed)
    per_day = {}
    total_orders = 0
    total_cents = 0
    for d in range(args.first_day, args.first_day + args.days):
        day, rows = orders_for_day(d, prods, args.customers, args.seed)
        with open(os.path.join(args.out, "orders", f"orders-{day.isoformat()}.csv"), "w",
                  newline="") as f:
            w = csv.writer(f)
            w.writerow(["order_id", "customer_id", "product_id", "quantity", "amount", "ordered_at"])
            for r in rows:
                w.writerow(r[:4] + [f"{r[4] // 100}.{r[4] % 100:02d}", r[5]])
        cents = sum(r[4] for r in rows)
        per_day[day.isoformat()] = {"orders": len(rows), "revenue": f"{cents // 100}.{cents % 100:02d}"}
        total_orders += len(rows)
        total_cents += cents
    print(json.dumps({"customers": args.customers, "products": len(prods), "orders": total_orders,
                      "revenue": f"{total_cents // 100}.{total_cents % 100:02d}",
                      "per_day": per_day}))


if __name__ == "__main__":
    main()
