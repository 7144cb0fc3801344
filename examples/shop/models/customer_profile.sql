-- One row per customer: who they are and how they buy. Used by BI and as ML features.
SELECT c.customer_id,
       c.name,
       c.country,
       CAST(c.signup_date AS DATE) AS signup_date,
       coalesce(s.orders, 0) AS orders,
       coalesce(s.total_spent, 0) AS total_spent,
       s.last_order_at
FROM raw.customers c
LEFT JOIN processed.customer_order_stats s USING (customer_id)
