-- One row per (pseudonymised) user with a clean event: a customer, or an anonymous visitor's session (is_anonymous);
-- activity window, volume and home country.
with events as (

    select * from {{ ref('int_events__unioned') }}

),

activity as (

    select
        user_id,
        bool_or(is_anonymous) as is_anonymous,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at,
        count(*) as n_events,
        count(distinct basket_id) as n_baskets
    from events
    group by user_id

),

country_counts as (

    select user_id, country, count(*) as n_events
    from events
    where country is not null
    group by user_id, country

),

home_countries as (

    select user_id, arg_min(country, (-n_events, country)) as country
    from country_counts
    group by user_id

)

select
    activity.user_id,
    activity.is_anonymous,
    activity.first_seen_at,
    activity.last_seen_at,
    activity.n_events,
    activity.n_baskets,
    home_countries.country
from activity
left join home_countries on activity.user_id = home_countries.user_id
