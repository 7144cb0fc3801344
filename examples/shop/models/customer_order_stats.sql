-- Order statistics per customer.
SELECT customer_id,
       count(*) AS orders,
       sum(amount) AS total_spent,
       min(ordered_at) AS first_order_at,
       max(ordered_at) AS last_order_at
FROM raw.orders
GROUP BY customer_id
