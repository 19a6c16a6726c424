{{
    config(
        materialized='incremental',
        **window_replacement('as_of_date', 'label_window')
    )
}}

with as_of_dates as (

    {% for as_of_date in as_of_dates_in_window(label_window()) %}
    select
        {{ date_literal(as_of_date) }} as as_of_date,
        cast({{ dbt.dateadd('day', var('label_window_days'), date_literal(as_of_date)) }} as date) as label_window_end
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

-- The labelled population is exactly the feature rows at A: one definition, no drift.
population as (

    select as_of_date, user_id
    from {{ ref('user_features') }}
    where {{ in_window('as_of_date', label_window()) }}

),

cancel_days as (

    select activity_date, user_id
    from {{ source('warehouse', 'user_daily_activity') }}
    where cancels > 0
        and activity_date > {{ date_literal(label_window().first_day) }}
        and activity_date <= {{ dbt.dateadd('day', var('label_window_days'), date_literal(label_window().last_day)) }}

),

cancelled_in_label_window as (

    select distinct as_of_dates.as_of_date, cancel_days.user_id
    from as_of_dates
    inner join cancel_days
        on cancel_days.activity_date > as_of_dates.as_of_date
        and cancel_days.activity_date <= as_of_dates.label_window_end

)

select
    population.as_of_date,
    cast(population.user_id as {{ dbt.type_bigint() }}) as user_id,
    cast(
        case when cancelled_in_label_window.user_id is null then 0 else 1 end
        as {{ dbt.type_int() }}
    ) as churned
from population
left join cancelled_in_label_window
    on population.as_of_date = cancelled_in_label_window.as_of_date
    and population.user_id = cancelled_in_label_window.user_id
