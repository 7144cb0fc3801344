-- Churn labels for training (the definition is in examples/shop/README.md): for every cutoff
-- `label_time` (00:00 UTC, every 7 days from the 31st day of orders, while its 30-day horizon still
-- lies within the data) and every customer with an order before it:
-- churned = no order in [label_time, label_time + 30 days).
-- Features for a label must come from before label_time (customer_daily: as_of <= label_time).
WITH bounds AS (
    SELECT CAST(min(ordered_at) AS DATE) AS first_day, CAST(max(ordered_at) AS DATE) AS last_day
    FROM raw.orders
),
cutoffs AS (
    SELECT unnest(generate_series(CAST(first_day + 30 AS TIMESTAMP),
                                  CAST(last_day + 1 - 30 AS TIMESTAMP), INTERVAL 7 DAY)) AS label_time
    FROM bounds
),
firsts AS (
    SELECT customer_id, min(ordered_at) AS first_order_at FROM raw.orders GROUP BY customer_id
),
candidates AS (
    SELECT f.customer_id, c.label_time FROM firsts f JOIN cutoffs c ON f.first_order_at < c.label_time
),
next_orders AS (  -- the first order at or after each cutoff
    SELECT k.customer_id, k.label_time, min(o.ordered_at) AS next_order_at
    FROM candidates k
    LEFT JOIN raw.orders o ON o.customer_id = k.customer_id AND o.ordered_at >= k.label_time
    GROUP BY k.customer_id, k.label_time
)
SELECT customer_id,
       label_time,
       next_order_at,
       coalesce(next_order_at >= label_time + INTERVAL 30 DAY, true) AS churned
FROM next_orders
