#!/usr/bin/env python3
"""Deterministic seed data for the example shop: customers, orders (CSV) and products (JSON lines).

Usage: generate.py OUT_DIR [--customers N] [--days D] [--seed S]. Prints the totals it produced so
tests can compare them with what SQL over the lake returns.
"""
import argparse
import csv
import datetime as dt
import json
import os
import random

COUNTRIES = ["KR", "US", "DE", "JP", "FR", "BR", "IN", "GB"]
CATEGORIES = ["books", "games", "garden", "kitchen", "music", "toys"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--customers", type=int, default=500)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    start = dt.date(2026, 10, 1)

    with open(os.path.join(args.out, "customers.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["customer_id", "name", "country", "signup_date"])
        for i in range(1, args.customers + 1):
            w.writerow([i, f"customer {i}", rnd.choice(COUNTRIES),
                        (start - dt.timedelta(days=rnd.randint(0, 365))).isoformat()])

    products = []
    with open(os.path.join(args.out, "products.jsonl"), "w") as f:
        for i in range(1, 101):
            p = {"product_id": i, "name": f"product {i}", "category": rnd.choice(CATEGORIES),
                 "price": round(rnd.uniform(2, 200), 2)}
            products.append(p)
            f.write(json.dumps(p) + "\n")

    orders = 0
    revenue_cents = 0
    with open(os.path.join(args.out, "orders.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["order_id", "customer_id", "product_id", "quantity", "amount", "ordered_at"])
        oid = 0
        for d in range(args.days):
            day = start + dt.timedelta(days=d)
            for _ in range(rnd.randint(20, 60)):
                oid += 1
                p = rnd.choice(products)
                q = rnd.randint(1, 4)
                cents = round(p["price"] * 100) * q
                ts = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=rnd.randint(0, 86399))
                w.writerow([oid, rnd.randint(1, args.customers), p["product_id"], q,
                            f"{cents // 100}.{cents % 100:02d}", ts.isoformat() + "Z"])
                orders += 1
                revenue_cents += cents
    print(json.dumps({"customers": args.customers, "products": len(products), "orders": orders,
                      "revenue": f"{revenue_cents // 100}.{revenue_cents % 100:02d}"}))


if __name__ == "__main__":
    main()
