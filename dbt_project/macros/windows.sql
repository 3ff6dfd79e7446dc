{#- Aggregates over rolled-up days joined to as-of dates, restricted to the window
    [as_of - days, as_of). `age_days` = as_of_date - event_date, from 1 (the last day) up. -#}

{% macro in_window(days) -%}
    age_days <= {{ days }}
{%- endmacro %}

{% macro window_sum(expr, days) -%}
    coalesce(sum({{ expr }}) filter (where {{ in_window(days) }}), 0)
{%- endmacro %}

{#- Share of a count in the window; null when the denominator is 0. -#}
{% macro window_ratio(numerator, denominator, days) -%}
    {{ window_sum(numerator, days) }}::double / nullif({{ window_sum(denominator, days) }}, 0)
{%- endmacro %}

{#- Exact sample standard deviation from integer cents: the numerator
    n * sum(c^2) - sum(c)^2 is computed in HUGEINT, so only the last division rounds. -#}
{% macro window_amount_std(days) -%}
    case when {{ window_sum('txn_count', days) }} >= 2 then sqrt(
        ({{ window_sum('txn_count', days) }}::hugeint * {{ window_sum('amount_cents_sq_sum', days) }}
         - {{ window_sum('amount_cents_sum', days) }} * {{ window_sum('amount_cents_sum', days) }})::double
        / ({{ window_sum('txn_count', days) }}::double * ({{ window_sum('txn_count', days) }} - 1))
    ) / 100 end
{%- endmacro %}

{#- Rolled-up rows of the last `days` days before each as-of date. -#}
{% macro join_window(rolled_up, days) -%}
    as_of_dates as a
    join {{ rolled_up }} as r
        on r.event_date < a.as_of_date
        and r.event_date >= a.as_of_date - {{ days }}
{%- endmacro %}
