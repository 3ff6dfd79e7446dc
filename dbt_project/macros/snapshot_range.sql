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
    (so a partition built out of order still sees its whole history). The missing days are
    looked up first and written as literals, so the scan of the raw Delta table is pruned to
    those partitions instead of read whole. -#}
{% macro rolled_up_days_filter(date_column) %}
    {%- set start, end = snapshot_start_date(), snapshot_end_date() -%}
    {%- if not is_incremental() -%}
        ({{ date_column }} <= '{{ end }}'::date)
    {%- else -%}
        {%- set missing = [] -%}
        {%- if execute -%}
            {%- set query -%}
                select distinct event_date::varchar from {{ ref('stg_raw__transactions') }}
                where event_date < '{{ start }}'::date
                except
                select distinct event_date::varchar from {{ this }}
            {%- endset -%}
            {%- set missing = run_query(query).columns[0].values() | list -%}
        {%- endif -%}
        ({{ date_column }} between '{{ start }}'::date and '{{ end }}'::date
        {%- for day in missing %} or {{ date_column }} = '{{ day }}'::date{% endfor %})
    {%- endif -%}
{% endmacro %}

{#- The snapshots a run builds (as_of_date = partition day + 1): where its data tests look, so a
    daily partition's tests cost the same on day 10 as on day 1000. -#}
{% macro in_snapshot_range(date_column='as_of_date', offset_days=1) %}
    {{ date_column }} between '{{ snapshot_start_date() }}'::date + {{ offset_days }}
                          and '{{ snapshot_end_date() }}'::date + {{ offset_days }}
{%- endmacro %}
