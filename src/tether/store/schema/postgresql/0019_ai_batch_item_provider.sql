-- A batch's id and its requests' custom ids are the provider's own: two
-- providers (a local or proxy one numbers its batches 1, 2, 3) may hand out the
-- same batch id, and a batch's results keyed by (batch_id, custom_id) alone
-- collided with the other provider's, which went unrecorded. The provider is
-- now part of the key.
CREATE UNIQUE INDEX ai_calls_provider_batch_item ON ai_calls (provider, batch_id, custom_id)
    WHERE batch_id IS NOT NULL AND custom_id IS NOT NULL;
DROP INDEX ai_calls_batch_item;
