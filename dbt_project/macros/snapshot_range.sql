{#- The snapshot range: Dagster partition keys D (the last day of data a snapshot includes). -#}
{% macro snapshot_start_date() %}
    {{ return(var('start_date') or snapshot_end_date()) }}
{% endmacro %}

{% macro snapshot_end_date() %}
    {%- if var('end_date') -%}
        {{ return(var('end_date')) }}
    {%- elif execute and flags.WHICH in ('run', 'build', 'test', 'compile', 'show') -%}
        {{ exceptions.raise_compiler_error(
            "Pass the last day of data to include: --vars '{end_date: YYYY-MM-DD}'") }}
    {%- else -%}
        {{ return('1970-01-01') }}
    {%- endif -%}
{% endmacro %}

{#- Rolled-up days to (re)build: the requested days, plus any earlier raw day never rolled up
    (so a partition built out of order still sees its whole history). -#}
{% macro rolled_up_days_filter(date_column) %}
    {{ date_column }} <= '{{ snapshot_end_date() }}'::date
    {%- if is_incremental() %}
    and (
        {{ date_column }} >= '{{ snapshot_start_date() }}'::date
        or {{ date_column }} not in (select distinct event_date from {{ this }})
    )
    {%- endif %}
{% endmacro %}
