{{
    config(
        materialized='incremental',
        **window_replacement('activity_date', 'daily_window')
    )
}}

with events_in_window as (

    select *
    from {{ source('warehouse', 'raw_events') }}
    where {{ in_window('event_date', daily_window()) }}

),

event_counts as (

    select
        event_date,
        user_id,
        sum(case when event_type = 'login' then 1 else 0 end) as logins,
        sum(case when event_type = 'session' then 1 else 0 end) as sessions,
        {{ exact_sum("case when event_type = 'session' then session_seconds else 0 end") }} as session_seconds_sum,
        sum(case when event_type = 'payment' then 1 else 0 end) as payment_attempts,
        sum(case when event_type = 'payment' and payment_status = 'failed' then 1 else 0 end) as payment_failures,
        sum(case when event_type = 'support_ticket' then 1 else 0 end) as support_tickets,
        sum(case when event_type = 'cancel' then 1 else 0 end) as cancels,
        max(event_ts) as last_event_ts,
        -- The plan of the day's latest event (ties broken by event_id), in the same pass.
        {{ latest_value('plan_tier', ['event_ts', 'event_id']) }} as plan_tier
    from events_in_window
    group by event_date, user_id

)

select
    cast(event_counts.event_date as date) as activity_date,
    cast(event_counts.user_id as {{ dbt.type_bigint() }}) as user_id,
    cast(event_counts.logins as {{ dbt.type_int() }}) as logins,
    cast(event_counts.sessions as {{ dbt.type_int() }}) as sessions,
    cast(event_counts.session_seconds_sum as {{ double_type() }}) as session_seconds_sum,
    cast(event_counts.payment_attempts as {{ dbt.type_int() }}) as payment_attempts,
    cast(event_counts.payment_failures as {{ dbt.type_int() }}) as payment_failures,
    cast(event_counts.support_tickets as {{ dbt.type_int() }}) as support_tickets,
    cast(event_counts.cancels as {{ dbt.type_int() }}) as cancels,
    event_counts.last_event_ts,
    event_counts.plan_tier
from event_counts
