{{ config(materialized='ephemeral') }}

with as_of_dates as (

    select * from {{ ref('as_of_dates') }}

),

activity_up_to_last_as_of as (

    select *
    from {{ source('warehouse', 'user_daily_activity') }}
    where activity_date <= {{ date_literal(weekly_window().last_day) }}

),

first_cancel as (

    select user_id, min(activity_date) as first_cancel_date
    from activity_up_to_last_as_of
    where cancels > 0
    group by user_id

),

lookback_activity as (

    select
        as_of_dates.as_of_date,
        as_of_dates.payment_window_start,
        as_of_dates.session_window_start,
        activity.*
    from as_of_dates
    inner join activity_up_to_last_as_of as activity
        on activity.activity_date between as_of_dates.lookback_start and as_of_dates.as_of_date

)

-- A cancel at any time on or before A removes the user, however long ago it was.
select lookback_activity.*
from lookback_activity
left join first_cancel
    on lookback_activity.user_id = first_cancel.user_id
where first_cancel.first_cancel_date is null
    or first_cancel.first_cancel_date > lookback_activity.as_of_date
