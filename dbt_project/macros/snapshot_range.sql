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

{#- The days of `source` before the run's first day that this incremental model has no row
    of (its `date_column` day never added), oldest first; [] when not incremental. -#}
{% macro days_never_added(source, date_column) %}
    {%- if not (is_incremental() and execute) -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set query -%}
        select distinct {{ date_column }}::varchar from {{ source }}
        where {{ date_column }} < '{{ snapshot_start_date() }}'::date
        except
        select distinct {{ date_column }}::varchar from {{ this }}
    {%- endset -%}
    {{ return(run_query(query).columns[0].values() | list | sort) }}
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
        {%- set missing = days_never_added(ref('stg_raw__transactions'), 'event_date') -%}
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
