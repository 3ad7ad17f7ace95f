//! Tests of the order, OMS and webhook simulations over real HTTP.
