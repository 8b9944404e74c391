"""Pure per-(request, pin) policy for the fan-out: no network, no PyFlink, no clock.

Records are plain dicts as fastavro decodes them; state is plain, picklable dicts kept by the caller
in Flink keyed state; time is always passed in as epoch milliseconds.

    preferences  opt-outs, unsubscribe, time zone and quiet hours of one user; blocked_reason()
    caps         per-user daily frequency caps per category, on the user's local day
    quiet        quiet hours in the user's time zone (midnight-crossing windows, DST)
    classify     service vs marketing classes and per-device daily vendor quotas (China vendors)
    templates    templates with variables and per-locale variants
    limits       per-vendor payload and text limits, checked before dispatch
    schedule     next fire time of 5-field cron expressions in a time zone
    decide       decide() per (request, pin) and filter_devices() per device: the fan-out's entry points
    zones        IANA time-zone helpers shared by the above
"""
