{{
    config(
        materialized='incremental',
        **window_replacement('as_of_date', 'weekly_window')
    )
}}

with population_activity as (

    select * from {{ ref('population_daily_activity') }}

),

window_totals as (

    select
        as_of_date,
        user_id,
        max(case when logins > 0 then activity_date end) as last_login_date,
        sum(case when activity_date >= payment_window_start then payment_attempts else 0 end) as payment_attempts_30d,
        sum(case when activity_date >= payment_window_start then payment_failures else 0 end) as payment_failures_30d,
        sum(case when activity_date >= session_window_start then sessions else 0 end) as sessions_7d,
        {{ exact_sum('case when activity_date >= session_window_start then session_seconds_sum else 0 end') }} as session_seconds_7d,
        sum(support_tickets) as support_tickets_90d
    from population_activity
    group by as_of_date, user_id

),

ranked_activity_days as (

    select
        as_of_date,
        user_id,
        plan_tier,
        row_number() over (
            partition by as_of_date, user_id
            order by activity_date desc
        ) as recency_rank
    from population_activity

),

latest_plan_tier as (

    select as_of_date, user_id, plan_tier
    from ranked_activity_days
    where recency_rank = 1

)

select
    window_totals.as_of_date,
    cast(window_totals.user_id as {{ dbt.type_bigint() }}) as user_id,
    -- the lookback length when there is no login in the lookback
    cast(
        coalesce({{ dbt.datediff('window_totals.last_login_date', 'window_totals.as_of_date', 'day') }}, {{ var('lookback_days') }})
        as {{ dbt.type_int() }}
    ) as days_since_last_login,
    cast(window_totals.payment_attempts_30d as {{ dbt.type_int() }}) as payment_attempts_30d,
    cast(window_totals.payment_failures_30d as {{ dbt.type_int() }}) as payment_failures_30d,
    cast(window_totals.payment_failures_30d as {{ double_type() }})
        / case when window_totals.payment_attempts_30d > 0 then window_totals.payment_attempts_30d else 1 end
        as payment_failure_rate,
    cast(
        case
            when window_totals.sessions_7d > 0 then window_totals.session_seconds_7d / window_totals.sessions_7d
            else 0
        end
        as {{ double_type() }}
    ) as avg_session_length_7d,
    cast(window_totals.support_tickets_90d as {{ dbt.type_int() }}) as support_tickets_90d,
    latest_plan_tier.plan_tier
from window_totals
inner join latest_plan_tier
    on window_totals.as_of_date = latest_plan_tier.as_of_date
    and window_totals.user_id = latest_plan_tier.user_id
