-- Revenue per day, rebuilt incrementally: the runner passes the day being processed as $start/$end.
SELECT CAST(ordered_at AS DATE) AS day,
       count(*) AS orders,
       sum(amount) AS revenue
FROM raw.orders
WHERE ordered_at >= $start AND ordered_at < $end
GROUP BY 1
