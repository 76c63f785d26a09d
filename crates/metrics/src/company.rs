//! Companies: the parsed form of a company's editable fields, and the
//! update-mask rules of UpdateCompany.

use metrix_core::error::{FieldViolation, Violations};
use metrix_core::reference;
use metrix_proto::metrics::v1::{BusinessModel, Company};

use crate::store::CompanyRow;

/// The longest company name, in characters.
pub const MAX_NAME_LENGTH: usize = 200;
/// The earliest accepted founding year.
pub const MIN_FOUNDING_YEAR: i32 = 1800;

/// The fields of a company a caller may set, each valid by construction:
/// [`CompanyFields::parse`] and [`CompanyFields::updated`] check them, and
/// [`CompanyFields::stored`] reads those of a company stored that way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyFields {
    name: String,
    sector_id: String,
    business_model: BusinessModel,
    country_code: String,
    founding_year: i32,
}

/// A field of a company that UpdateCompany may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdatableField {
    /// `name`.
    Name,
    /// `sector_id`.
    SectorId,
    /// `business_model`.
    BusinessModel,
    /// `country_code`.
    CountryCode,
    /// `founding_year`.
    FoundingYear,
}

impl UpdatableField {
    /// Every updatable field.
    pub const ALL: [UpdatableField; 5] = [
        UpdatableField::Name,
        UpdatableField::SectorId,
        UpdatableField::BusinessModel,
        UpdatableField::CountryCode,
        UpdatableField::FoundingYear,
    ];

    /// The field's name in the contract.
    pub fn name(self) -> &'static str {
        match self {
            UpdatableField::Name => "name",
            UpdatableField::SectorId => "sector_id",
            UpdatableField::BusinessModel => "business_model",
            UpdatableField::CountryCode => "country_code",
            UpdatableField::FoundingYear => "founding_year",
        }
    }

    fn from_path(path: &str) -> Option<Self> {
        // Masks over REST arrive in JSON's lowerCamelCase; accept both spellings.
        let snake: String = path
            .chars()
            .flat_map(|character| {
                if character.is_ascii_uppercase() {
                    vec!['_', character.to_ascii_lowercase()]
                } else {
                    vec![character]
                }
            })
            .collect();
        Self::ALL.into_iter().find(|field| field.name() == snake)
    }

    fn is_set_in(self, company: &Company) -> bool {
        match self {
            UpdatableField::Name => !company.name.is_empty(),
            UpdatableField::SectorId => !company.sector_id.is_empty(),
            UpdatableField::BusinessModel => company.business_model != BusinessModel::Unspecified as i32,
            UpdatableField::CountryCode => !company.country_code.is_empty(),
            UpdatableField::FoundingYear => company.founding_year != 0,
        }
    }
}

/// The fields an update changes: those named in the mask, or, for an empty
/// mask, every updatable field set in `company` (AIP-134).
pub fn fields_to_update(company: &Company, mask_paths: &[String]) -> Result<Vec<UpdatableField>, FieldViolation> {
    if mask_paths.is_empty() {
        let fields: Vec<_> = UpdatableField::ALL
            .into_iter()
            .filter(|field| field.is_set_in(company))
            .collect();
        if fields.is_empty() {
            return Err(FieldViolation::new("company", "sets no updatable field"));
        }
        return Ok(fields);
    }
    let mut fields = Vec::new();
    for path in mask_paths {
        let Some(field) = UpdatableField::from_path(path.trim()) else {
            return Err(FieldViolation::new(
                "update_mask",
                format!(
                    "{path:?} is not an updatable field; expected name, sector_id, business_model, country_code or founding_year"
                ),
            ));
        };
        if !fields.contains(&field) {
            fields.push(field);
        }
    }
    Ok(fields)
}

impl CompanyFields {
    /// Parses every editable field of `company`, collecting all violations,
    /// named by their path inside the company (`name`, `sector_id`, …).
    pub fn parse(company: &Company, current_year: i32) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Violations::new();
        let name = violations.check(parse_name(&company.name));
        let sector_id = violations.check(parse_sector(&company.sector_id));
        let business_model = violations.check(parse_business_model(company.business_model));
        let country_code = violations.check(parse_country(&company.country_code));
        let founding_year = violations.check(parse_founding_year(company.founding_year, current_year));
        let (Some(name), Some(sector_id), Some(business_model), Some(country_code), Some(founding_year)) =
            (name, sector_id, business_model, country_code, founding_year)
        else {
            return Err(violations.into_vec());
        };
        Ok(Self {
            name,
            sector_id,
            business_model,
            country_code,
            founding_year,
        })
    }

    /// The fields of a stored company, which were checked when it was
    /// stored (an unknown business model number reads as OTHER).
    pub fn stored(row: &CompanyRow) -> Self {
        Self {
            name: row.name.clone(),
            sector_id: row.sector_id.clone(),
            business_model: BusinessModel::try_from(row.business_model).unwrap_or(BusinessModel::Other),
            country_code: row.country_code.clone(),
            founding_year: row.founding_year,
        }
    }

    /// Writes the fields into `row`, the rest of which stays as it is.
    pub fn write_to(self, row: &mut CompanyRow) {
        row.name = self.name;
        row.sector_id = self.sector_id;
        row.business_model = self.business_model as i32;
        row.country_code = self.country_code;
        row.founding_year = self.founding_year;
    }

    /// The display name, trimmed, 1 to 200 characters.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A sector id of the taxonomy.
    pub fn sector_id(&self) -> &str {
        &self.sector_id
    }

    /// The business model (never unspecified).
    pub fn business_model(&self) -> BusinessModel {
        self.business_model
    }

    /// An assigned ISO 3166-1 alpha-2 code, upper case.
    pub fn country_code(&self) -> &str {
        &self.country_code
    }

    /// The founding year, or 0 when unknown.
    pub fn founding_year(&self) -> i32 {
        self.founding_year
    }

    /// `self` with the `fields` of `update` applied, each parsed; violations
    /// are named by their path inside the company.
    pub fn updated(
        &self,
        update: &Company,
        fields: &[UpdatableField],
        current_year: i32,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut next = self.clone();
        let mut violations = Violations::new();
        for field in fields {
            let outcome = match field {
                UpdatableField::Name => parse_name(&update.name).map(|name| next.name = name),
                UpdatableField::SectorId => parse_sector(&update.sector_id).map(|sector| next.sector_id = sector),
                UpdatableField::BusinessModel => {
                    parse_business_model(update.business_model).map(|model| next.business_model = model)
                }
                UpdatableField::CountryCode => {
                    parse_country(&update.country_code).map(|country| next.country_code = country)
                }
                UpdatableField::FoundingYear => {
                    parse_founding_year(update.founding_year, current_year).map(|year| next.founding_year = year)
                }
            };
            violations.check(outcome);
        }
        violations.finish().map(|()| next)
    }
}

fn parse_name(text: &str) -> Result<String, FieldViolation> {
    let name = text.trim();
    let length = name.chars().count();
    if length == 0 {
        return Err(FieldViolation::new("name", "is required"));
    }
    if length > MAX_NAME_LENGTH {
        return Err(FieldViolation::new(
            "name",
            format!("must be at most {MAX_NAME_LENGTH} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldViolation::new("name", "must not contain control characters"));
    }
    Ok(name.to_owned())
}

fn parse_sector(text: &str) -> Result<String, FieldViolation> {
    const FIELD: &str = "sector_id";
    if text.trim().is_empty() {
        return Err(FieldViolation::new(FIELD, "is required; see ListSectors"));
    }
    match reference::sector(text.trim()) {
        Some(sector) => Ok(sector.id.to_owned()),
        None => Err(FieldViolation::new(
            FIELD,
            format!("{text:?} is not a sector of the taxonomy; see ListSectors"),
        )),
    }
}

fn parse_business_model(value: i32) -> Result<BusinessModel, FieldViolation> {
    const FIELD: &str = "business_model";
    match BusinessModel::try_from(value) {
        Ok(BusinessModel::Unspecified) => Err(FieldViolation::new(FIELD, "is required")),
        Ok(model) => Ok(model),
        Err(_) => Err(FieldViolation::new(FIELD, format!("{value} is not a business model"))),
    }
}

fn parse_country(text: &str) -> Result<String, FieldViolation> {
    const FIELD: &str = "country_code";
    let code = text.trim();
    if code.is_empty() {
        return Err(FieldViolation::new(FIELD, "is required"));
    }
    if reference::is_country_code(code) {
        return Ok(code.to_owned());
    }
    if reference::is_country_code(&code.to_ascii_uppercase()) {
        return Err(FieldViolation::new(
            FIELD,
            format!("must be upper case: {}", code.to_ascii_uppercase()),
        ));
    }
    Err(FieldViolation::new(
        FIELD,
        format!("{code:?} is not an ISO 3166-1 alpha-2 country code such as DE or US"),
    ))
}

fn parse_founding_year(year: i32, current_year: i32) -> Result<i32, FieldViolation> {
    if year == 0 || (MIN_FOUNDING_YEAR..=current_year).contains(&year) {
        Ok(year)
    } else {
        Err(FieldViolation::new(
            "founding_year",
            format!("must be between {MIN_FOUNDING_YEAR} and {current_year}, or 0 when unknown"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn company() -> Company {
        Company {
            name: "  Acme Analytics ".into(),
            sector_id: "ai_data".into(),
            business_model: BusinessModel::B2bSaas as i32,
            country_code: "DE".into(),
            founding_year: 2019,
            ..Default::default()
        }
    }

    #[test]
    fn a_valid_company_parses_trimmed() {
        let fields = CompanyFields::parse(&company(), 2026).expect("valid");
        assert_eq!(fields.name(), "Acme Analytics");
        assert_eq!(fields.business_model(), BusinessModel::B2bSaas);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let bad = Company {
            name: String::new(),
            sector_id: "space_pirates".into(),
            business_model: 0,
            country_code: "uk".into(),
            founding_year: 2999,
            ..Default::default()
        };
        let violations = CompanyFields::parse(&bad, 2026).expect_err("invalid");
        let fields: Vec<_> = violations.iter().map(|violation| violation.field.as_str()).collect();
        assert_eq!(
            fields,
            ["name", "sector_id", "business_model", "country_code", "founding_year"]
        );
    }

    #[test]
    fn lower_case_countries_get_a_hint() {
        let mut lower = company();
        lower.country_code = "de".into();
        let violations = CompanyFields::parse(&lower, 2026).expect_err("lower case");
        assert!(violations[0].description.contains("DE"), "{violations:?}");
    }

    #[test]
    fn masks_name_fields_in_either_spelling() {
        let fields = fields_to_update(&company(), &["sectorId".into(), "founding_year".into()]).expect("known");
        assert_eq!(fields, [UpdatableField::SectorId, UpdatableField::FoundingYear]);
        let error = fields_to_update(&company(), &["revenue_band_id".into()]).expect_err("output only");
        assert_eq!(error.field, "update_mask");
    }

    #[test]
    fn an_empty_mask_updates_what_is_set() {
        let partial = Company {
            name: "New name".into(),
            ..Default::default()
        };
        assert_eq!(fields_to_update(&partial, &[]).expect("set"), [UpdatableField::Name]);
        assert!(fields_to_update(&Company::default(), &[]).is_err());
    }

    #[test]
    fn updates_apply_only_the_masked_fields() {
        let current = CompanyFields::parse(&company(), 2026).expect("valid");
        let update = Company {
            name: "Ignored".into(),
            country_code: "FR".into(),
            ..Default::default()
        };
        let next = current
            .updated(&update, &[UpdatableField::CountryCode], 2026)
            .expect("valid");
        assert_eq!(next.country_code(), "FR");
        assert_eq!(next.name(), "Acme Analytics");
    }
}
