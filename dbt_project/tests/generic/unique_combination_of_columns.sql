{#
  Fails with one row per key that occurs more than once in the model.
  (dbt_utils has the same test; this project installs no dbt packages.)
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

select
    {{ combination_of_columns | join(', ') }},
    count(*) as occurrences
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1

{% endtest %}
