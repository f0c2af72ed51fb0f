"""The region annotation engine: finding mentions read from reports (``mentions``), localised into regions.

Import the submodules you need (``from regionmed.annotation.mentions import MentionExtractor``); this
package imports nothing heavy itself.
"""
