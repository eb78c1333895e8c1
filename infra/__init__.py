"""The Pulumi program of markethub-rollout: one ComponentResource per concept of the rollout plan.

Public API: ``infra.program.main`` (the program; Pulumi CLI and Automation API inline programs),
``infra.program.build`` (the same from validated values), ``infra.settings.read_settings`` (a stack's
config keys), the components below, and ``infra.policies`` (the policy pack's checks, pure).
"""
