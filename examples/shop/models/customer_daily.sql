-- One row per customer per day, from the later of signup and the first day of orders to the last
-- day of orders: the customer's features as of the END of that day (`as_of` = day + 1, 00:00 UTC),
-- computed only from orders placed before `as_of` and the newest profile version changed before it.
-- A point-in-time join takes, for a label at time t, the row with the greatest as_of <= t.
--
-- How (fast: no window over the 3M-row grid): the features of a customer only change on a few days
-- (an order; 7 and 30 days after it, when it leaves the windows; a profile change). Deltas on those
-- days, summed up per customer, give sparse rows valid from their day to the next change; each is
-- then repeated for every day it is valid. days_since_* are computed per day.
WITH bounds AS (
    SELECT CAST(min(ordered_at) AS DATE) AS first_day, CAST(max(ordered_at) AS DATE) AS last_day
    FROM raw.orders
),
versions AS (
    -- raw.customer_history keeps every load of a version; the newest load of each is the one.
    SELECT customer_id, version, country, plan, marketing_opt_in,
           CAST(signup_date AS DATE) AS signup_date, CAST(changed_at AS TIMESTAMP) AS changed_at
    FROM raw.customer_history
    QUALIFY row_number() OVER (PARTITION BY customer_id, version ORDER BY _loaded_at DESC) = 1
),
customers AS (
    SELECT v.customer_id, min(v.signup_date) AS signup_date,
           greatest(min(v.signup_date), any_value(b.first_day)) AS first_row, any_value(b.last_day) AS last_day
    FROM versions v, bounds b
    GROUP BY v.customer_id
    HAVING min(v.signup_date) <= any_value(b.last_day)
),
daily_orders AS (
    SELECT customer_id, CAST(ordered_at AS DATE) AS day, count(*) AS n, sum(amount) AS spent,
           max(ordered_at) AS last_at
    FROM raw.orders
    GROUP BY ALL
),
deltas AS (  -- what changes on which day
    SELECT customer_id, day, n AS d_total, spent AS d_spend, n AS d_7d, n AS d_30d,
           spent AS d_spend_30d, last_at
    FROM daily_orders
    UNION ALL
    SELECT customer_id, day + 7, 0, 0, -n, 0, 0, NULL FROM daily_orders
    UNION ALL
    SELECT customer_id, day + 30, 0, 0, 0, -n, -spent, NULL FROM daily_orders
    UNION ALL
    SELECT customer_id, CAST(changed_at AS DATE), 0, 0, 0, 0, 0, NULL FROM versions
),
changes AS (  -- per customer: the first row's day, then each change day up to the last day
    SELECT d.customer_id, greatest(d.day, c.first_row) AS valid_from, d.d_total, d.d_spend,
           d.d_7d, d.d_30d, d.d_spend_30d, d.last_at
    FROM deltas d JOIN customers c USING (customer_id)
    WHERE d.day <= c.last_day
    UNION ALL
    SELECT customer_id, first_row, 0, 0, 0, 0, 0, NULL FROM customers
),
sparse AS (
    SELECT customer_id, valid_from, signup_date,
           lead(valid_from, 1, last_day + 1) OVER w AS valid_to,
           sum(d_total) OVER w AS orders_total,
           sum(d_spend) OVER w AS spend_total,
           sum(d_7d) OVER w AS orders_7d,
           sum(d_30d) OVER w AS orders_30d,
           sum(d_spend_30d) OVER w AS spend_30d,
           max(last_at) OVER w AS last_order_at
    FROM (SELECT customer_id, valid_from, sum(d_total) AS d_total, sum(d_spend) AS d_spend,
                 sum(d_7d) AS d_7d, sum(d_30d) AS d_30d, sum(d_spend_30d) AS d_spend_30d,
                 max(last_at) AS last_at
          FROM changes GROUP BY customer_id, valid_from)
    JOIN customers USING (customer_id)
    WINDOW w AS (PARTITION BY customer_id ORDER BY valid_from ROWS UNBOUNDED PRECEDING)
),
profiled AS (
    SELECT s.*, v.country, v.plan, v.marketing_opt_in, v.version AS profile_version
    FROM sparse s
    ASOF LEFT JOIN versions v
      ON v.customer_id = s.customer_id AND CAST(s.valid_from + 1 AS TIMESTAMP) > v.changed_at
),
calendar AS (
    SELECT CAST(unnest(generate_series(CAST(first_day AS TIMESTAMP), CAST(last_day AS TIMESTAMP),
                                       INTERVAL 1 DAY)) AS DATE) AS day
    FROM bounds
)
SELECT p.customer_id,
       c.day,
       CAST(c.day + 1 AS TIMESTAMP) AS as_of,
       p.country,
       p.plan,
       p.marketing_opt_in,
       p.profile_version,
       c.day - p.signup_date AS days_since_signup,
       CAST(p.orders_total AS BIGINT) AS orders_total,
       CAST(p.spend_total AS DECIMAL(18, 2)) AS spend_total,
       CAST(p.orders_7d AS BIGINT) AS orders_7d,
       CAST(p.orders_30d AS BIGINT) AS orders_30d,
       CAST(p.spend_30d AS DECIMAL(18, 2)) AS spend_30d,
       p.last_order_at,
       c.day - CAST(p.last_order_at AS DATE) AS days_since_last_order
FROM profiled p
JOIN calendar c ON c.day >= p.valid_from AND c.day < p.valid_to
