{#- Tests on incremental models look only at the snapshots being built in this run. -#}

{% test unique_in_snapshot(model, columns, date_column='as_of_date', offset_days=1) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
where {{ in_snapshot_range(date_column, offset_days) }}
group by all
having count(*) > 1
{% endtest %}

{% test true_in_snapshot(model, column_name, expression, date_column='as_of_date',
                         offset_days=1) %}
select *
from {{ model }}
where {{ in_snapshot_range(date_column, offset_days) }}
  and not coalesce({{ expression }}, true)
{% endtest %}

{% test accepted_values_in_snapshot(model, column_name, values, date_column='as_of_date',
                                    offset_days=1) %}
select *
from {{ model }}
where {{ in_snapshot_range(date_column, offset_days) }}
  and ({{ column_name }} is null or {{ column_name }} not in (
      {%- for v in values %}'{{ v }}'{{ ", " if not loop.last }}{% endfor %}))
{% endtest %}
