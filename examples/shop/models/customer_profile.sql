-- One row per customer: who they are and how they buy, as of now (an all-time overwrite: for BI).
-- Training features with their history are in customer_daily.
-- raw.customers keeps every version a load saw (the source is incremental by updated_at): the
-- newest load of each customer is the current one.
SELECT c.customer_id,
       c.name,
       c.country,
       CAST(c.signup_date AS DATE) AS signup_date,
       c.plan,
       c.marketing_opt_in,
       coalesce(s.orders, 0) AS orders,
       coalesce(s.total_spent, 0) AS total_spent,
       s.last_order_at
FROM (SELECT *
      FROM raw.customers
      QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY _loaded_at DESC) = 1) c
LEFT JOIN processed.customer_order_stats s USING (customer_id)
