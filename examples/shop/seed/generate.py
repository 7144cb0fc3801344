#!/usr/bin/env python3
"""Deterministic example data for the shop, with a real signal (see examples/shop/README.md).

Every customer has a hidden propensity z ~ N(0, 1), written nowhere: it drives how often they visit
(click sessions), how often a visit ends in an order, their plan, and how long they stay before they
churn (stop visiting for good). What the lake sees is only its consequences:

  OUT/app.db                      SQLite "application database": `customers` (current state,
                                  updated_at = time of the last change, ISO text) and
                                  `customer_history` (one full row per version, written by the app
                                  on every change: signup, plan changes, opt-outs, moves)
  OUT/orders/orders-YYYY-MM-DD.csv  one CSV drop of orders per day for the last --daily-drops
                                  (14) days; older days as monthly exports orders-YYYY-MM.csv
  OUT/products.jsonl              the product catalogue
  OUT/clicks.ndjson               historical click-stream events (click, add_to_cart, purchase) in
                                  event-time order, for POST /api/v1/streams/clicks/events

Usage: generate.py OUT [--customers N] [--days D] [--now T | --start DAY] [--first-day K]
                       [--daily-drops N] [--seed S] [--drift] [--drift-days N]
The data covers the D whole days before the day of --now (default: the current time, UTC) plus
that day up to --now; with --start DAY it covers exactly D days from DAY (00:00 UTC). --first-day K
writes only the order drops and click events of day K onwards (day 0 = the first day), for adding
the next day's drop. Same arguments (and seed) => byte-identical files. Prints a JSON summary (totals
per day) so tests can compare it with SQL over the lake.

--drift: from --drift-days (default 30) days before the end, the world changes: visits become 1.8x
as frequent and no longer depend on the propensity, the churn hazard doubles and no longer depends
on it either, prices rise by 25% and add-to-cart becomes more likely. Visits, clicks and orders
before the drift point are identical to the run without --drift.
"""
import argparse
import datetime as dt
import json
import math
import os
import random
import sqlite3

COUNTRIES = ["KR", "US", "DE", "JP", "FR", "BR", "IN", "GB"]
COUNTRY_WEIGHTS = [10, 30, 12, 10, 9, 11, 10, 8]
CATEGORIES = ["books", "games", "garden", "kitchen", "music", "toys"]
PLANS = ["free", "plus", "pro"]
DAY = 86400

# The model (rates per day). Visits: VISIT_RATE * exp(VISIT_Z * z). Churn hazard:
# CHURN_HAZARD * exp(-CHURN_Z * z). A visit adds to cart with sigmoid(CART_A + CART_Z * z) and an
# order follows a cart add with sigmoid(ORDER_A + ORDER_Z * z).
VISIT_RATE, VISIT_Z = 0.035, 0.8
CHURN_HAZARD, CHURN_Z = 1 / 260, 0.9
CART_A, CART_Z = -0.4, 0.8
ORDER_A, ORDER_Z = 0.2, 0.6
# Drift (after the drift point).
DRIFT_VISITS, DRIFT_CHURN, DRIFT_PRICE, DRIFT_CART = 1.8, 2.0, 1.25, 0.6


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


_DAYS = {}


def _date_text(d):
    text = _DAYS.get(d)
    if text is None:
        text = _DAYS[d] = (dt.date(1970, 1, 1) + dt.timedelta(days=d)).isoformat()
    return text


def _iso(t, sep, zone):
    t = int(t)
    s = t % DAY
    return f"{_date_text(t // DAY)}{sep}{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}{zone}"


def iso_z(t):
    return _iso(t, "T", "Z")


def iso_space(t):
    return _iso(t, " ", "")


def day_of(t):
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).date()


def make_products(seed):
    rnd = random.Random(seed * 31 + 1)
    return [{"product_id": i, "name": f"product {i}", "category": rnd.choice(CATEGORIES),
             "price": round(rnd.uniform(2, 200), 2)} for i in range(1, 101)]


class World:
    def __init__(self, args, start, end):
        self.seed = args.seed
        self.start = start  # epoch seconds, 00:00 UTC of the first day
        self.end = end  # epoch seconds, exclusive
        self.drift = args.drift
        self.drift_at = max(start, end - args.drift_days * DAY)
        self.products = make_products(args.seed)
        self.customers = []  # (id, name, country, signup_date, updated_at, plan, opt_in)
        self.history = []  # (customer_id, version, name, country, plan, opt_in, signup, changed_at)
        self.clicks = []  # (t, customer_id, seq, event_type, value)
        self.orders = []  # (t, customer_id, product_id, quantity, cents)

    def customer(self, cid, days):
        rnd = random.Random(f"{self.seed}:{cid}")
        post = random.Random(f"{self.seed}:{cid}:post")  # draws after the drift point
        z = rnd.gauss(0, 1)  # the hidden propensity
        w = post.gauss(0, 1)  # after drift, visits follow this instead of z
        # 70% signed up in the year before the window, 30% during its first three quarters.
        if rnd.random() < 0.7:
            signup = self.start - rnd.uniform(0, 365) * DAY
        else:
            signup = self.start + rnd.uniform(0, 0.75 * days) * DAY
        signup = int(signup)
        country = rnd.choices(COUNTRIES, COUNTRY_WEIGHTS)[0]
        u = rnd.random()
        plan = 2 if u < sigmoid(z - 2.0) else (1 if u < sigmoid(z - 0.5) else 0)
        opt_in = 1 if rnd.random() < sigmoid(0.5 + 0.5 * z) else 0
        e1, e2 = rnd.expovariate(1), post.expovariate(1)
        hazard = CHURN_HAZARD * math.exp(-CHURN_Z * z)
        churn_at = signup + e1 / hazard * DAY
        if churn_at > self.drift_at:  # memoryless: redraw from the drift point
            h2 = CHURN_HAZARD * DRIFT_CHURN if self.drift else hazard
            churn_at = max(signup, self.drift_at) + e2 / h2 * DAY

        # Profile changes: (time, field, value). Upgrades while active; before churning, a
        # downgrade to free (60%) and a marketing opt-out (40%); rare moves.
        prof = random.Random(f"{self.seed}:{cid}:profile")  # its own draws: the visits
        changes = []  # before the drift point never depend on what happens after it
        t, cur = signup, plan
        rate_up = math.exp(z) / 500
        while cur < 2:
            t += prof.expovariate(rate_up) * DAY
            if t >= min(churn_at, self.end):
                break
            cur += 1
            changes.append((t, "plan", cur))
        if prof.random() < 0.6:
            changes.append((churn_at - prof.uniform(0, 14) * DAY, "plan", 0))
        if prof.random() < 0.4:
            changes.append((churn_at - prof.uniform(0, 20) * DAY, "opt_in", 0))
        t = signup
        while True:
            t += prof.expovariate(1 / 1500) * DAY
            if t >= self.end:
                break
            changes.append((t, "country", prof.choices(COUNTRIES, COUNTRY_WEIGHTS)[0]))
        changes = sorted((int(c[0]), c[1], c[2]) for c in changes
                         if signup < c[0] < self.end)
        name = f"customer {cid}"
        state = {"plan": plan, "opt_in": opt_in, "country": country}
        version = 1
        signup_date = day_of(signup).isoformat()
        self.history.append((cid, 1, name, country, PLANS[plan], opt_in, signup_date,
                             iso_space(signup)))
        updated = signup
        for t, field, value in changes:
            if state[field] == value:
                continue
            state[field] = value
            version += 1
            updated = t
            self.history.append((cid, version, name, state["country"], PLANS[state["plan"]],
                                 state["opt_in"], signup_date, iso_space(t)))
        self.customers.append((cid, name, state["country"], signup_date, iso_space(updated),
                               PLANS[state["plan"]], state["opt_in"]))

        # Visits: a Poisson process from max(signup, start) until churn or the end; each visit
        # is 1-4 clicks, maybe an add-to-cart, maybe an order (a purchase event).
        stop = min(churn_at, self.end)
        seq = 0
        for phase, r in ((0, rnd), (1, post)):
            lo = max(signup, self.start) if phase == 0 else max(signup, self.start, self.drift_at)
            hi = min(stop, self.drift_at) if phase == 0 else stop
            drifted = self.drift and phase == 1
            if drifted:
                rate = VISIT_RATE * DRIFT_VISITS * math.exp(VISIT_Z * w)
                cart_p = sigmoid(CART_A + DRIFT_CART + CART_Z * z)
            else:
                rate = VISIT_RATE * math.exp(VISIT_Z * z)
                cart_p = sigmoid(CART_A + CART_Z * z)
            order_p = sigmoid(ORDER_A + ORDER_Z * z)
            price_factor = DRIFT_PRICE if drifted else 1.0
            t = lo
            while True:
                t += r.expovariate(rate) * DAY
                if t >= hi:
                    break
                e = int(t)
                for _ in range(r.randint(1, 4)):
                    e += r.randint(3, 90)
                    self.clicks.append((e, cid, seq, "click", None))
                    seq += 1
                if r.random() < cart_p:
                    p = r.choice(self.products)
                    q = r.randint(1, 3)
                    cents = round(p["price"] * 100 * price_factor) * q
                    e += r.randint(5, 120)
                    self.clicks.append((e, cid, seq, "add_to_cart", cents))
                    seq += 1
                    if r.random() < order_p:
                        e += r.randint(10, 300)
                        self.clicks.append((e, cid, seq, "purchase", cents))
                        seq += 1
                        self.orders.append((e, cid, p["product_id"], q, cents))
        return z


def money(cents):
    return f"{cents // 100}.{cents % 100:02d}"


def write_app_db(path, world):
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                 "country TEXT NOT NULL, signup_date TEXT NOT NULL, updated_at TEXT NOT NULL, "
                 "plan TEXT NOT NULL, marketing_opt_in INTEGER NOT NULL)")
    conn.execute("CREATE TABLE customer_history (customer_id INTEGER NOT NULL, "
                 "version INTEGER NOT NULL, name TEXT NOT NULL, country TEXT NOT NULL, "
                 "plan TEXT NOT NULL, marketing_opt_in INTEGER NOT NULL, "
                 "signup_date TEXT NOT NULL, changed_at TEXT NOT NULL, "
                 "PRIMARY KEY (customer_id, version))")
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)", world.customers)
    conn.executemany("INSERT INTO customer_history VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     world.history)
    conn.commit()
    conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--customers", type=int, default=20000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--now", help="end of the data, RFC 3339 (default: the current time)")
    ap.add_argument("--start", help="first day (YYYY-MM-DD): the data covers exactly --days days")
    ap.add_argument("--first-day", type=int, default=0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--daily-drops", type=int, default=14,
                    help="the last N days come as daily files, older days as monthly files")
    ap.add_argument("--drift", action="store_true")
    ap.add_argument("--drift-days", type=int, default=30)
    args = ap.parse_args()
    if args.start and args.now:
        ap.error("--start and --now exclude each other")
    if args.start:
        first = dt.datetime.strptime(args.start, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
        start = int(first.timestamp())
        end = start + args.days * DAY
    else:
        if args.now:
            now = dt.datetime.fromisoformat(args.now.replace("Z", "+00:00"))
            if now.tzinfo is None:
                now = now.replace(tzinfo=dt.timezone.utc)
        else:
            now = dt.datetime.now(dt.timezone.utc)
        end = int(now.timestamp())
        start = (end // DAY - args.days) * DAY

    world = World(args, start, end)
    days_total = (end - start + DAY - 1) // DAY
    for cid in range(1, args.customers + 1):
        world.customer(cid, days_total)

    os.makedirs(os.path.join(args.out, "orders"), exist_ok=True)
    write_app_db(os.path.join(args.out, "app.db"), world)
    with open(os.path.join(args.out, "products.jsonl"), "w") as f:
        for p in world.products:
            f.write(json.dumps(p) + "\n")

    first_written = start + args.first_day * DAY
    # Orders: ids in time order over the whole period, so a later drop continues the sequence.
    world.orders.sort()
    per_day = {}
    by_day = {}
    for i, (t, cid, pid, q, cents) in enumerate(world.orders):
        if t < first_written or t >= end:
            continue
        by_day.setdefault(day_of(t).isoformat(), []).append((i + 1, cid, pid, q, cents, t))
    day = dt.datetime.fromtimestamp(first_written, dt.timezone.utc).date()
    last = dt.datetime.fromtimestamp(end - 1, dt.timezone.utc).date()
    # Days before the last --daily-drops days come as monthly exports (fewer files to load).
    daily_from = last - dt.timedelta(days=args.daily_drops - 1)
    total_orders = total_cents = 0
    files = {}
    while day <= last:
        rows = by_day.get(day.isoformat(), [])
        name = f"orders-{day.isoformat()}.csv" if day >= daily_from else f"orders-{day:%Y-%m}.csv"
        files.setdefault(name, []).extend(rows)
        cents = sum(r[4] for r in rows)
        per_day[day.isoformat()] = {"orders": len(rows), "revenue": money(cents)}
        total_orders += len(rows)
        total_cents += cents
        day += dt.timedelta(days=1)
    for name, rows in files.items():
        with open(os.path.join(args.out, "orders", name), "w", newline="") as f:
            f.write("order_id,customer_id,product_id,quantity,amount,ordered_at\r\n")
            for oid, cid, pid, q, cents, t in rows:
                f.write(f"{oid},{cid},{pid},{q},{money(cents)},{iso_z(t)}\r\n")

    # Clicks in event-time order (ties: customer, then the customer's own order).
    world.clicks.sort(key=lambda c: (c[0], c[1], c[2]))
    n_clicks = 0
    with open(os.path.join(args.out, "clicks.ndjson"), "w") as f:
        for t, cid, seq, kind, cents in world.clicks:
            if t < first_written or t >= end:
                continue
            value = "" if cents is None else f',"value":{money(cents)}'
            f.write(f'{{"customer_id":{cid},"ts":"{iso_z(t)}","event_type":"{kind}"'
                    f'{value},"event_id":"{cid}-{seq}"}}\n')
            n_clicks += 1

    print(json.dumps({"customers": args.customers, "products": len(world.products),
                      "orders": total_orders, "revenue": money(total_cents),
                      "clicks": n_clicks, "customer_versions": len(world.history),
                      "start": iso_z(start), "end": iso_z(end),
                      "drift_at": iso_z(world.drift_at) if args.drift else None,
                      "per_day": per_day}))


if __name__ == "__main__":
    main()
